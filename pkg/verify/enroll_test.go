package verify

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// scriptedEnroller answers BeginFor and FinishFor from a script and records the calls. The
// real daemon is exercised end to end in pam/enrollsuite; this checks the helper's decisions.
type scriptedEnroller struct {
	beginErr error
	finishes []rootsock.Finished
	finErr   error
	begun    []string // users
	codes    []string // codes passed to FinishFor
}

func (s *scriptedEnroller) BeginFor(_ context.Context, user, _ string) (rootsock.Pending, error) {
	s.begun = append(s.begun, user)
	if s.beginErr != nil {
		return rootsock.Pending{}, s.beginErr
	}
	k := totp.Key{Issuer: "Test HPC", Account: user, Secret: seed, Params: totp.DefaultParams}
	// The QR code as totp-syncd draws it (busapi's root socket).
	var qr bytes.Buffer
	if err := qrterm.Write(&qr, k.URI(), qrterm.HalfBlocks); err != nil {
		return rootsock.Pending{}, err
	}
	return rootsock.Pending{ID: "p1", URI: k.URI(), QR: qrterm.Plain(qr.String()), Expires: t0.Add(10 * time.Minute).Unix()}, nil
}

func (s *scriptedEnroller) FinishFor(_ context.Context, _, _, code string) (rootsock.Finished, error) {
	s.codes = append(s.codes, code)
	if s.finErr != nil {
		return rootsock.Finished{}, s.finErr
	}
	f := s.finishes[0]
	s.finishes = s.finishes[1:]
	return f, nil
}

func TestEnrollAtLogin(t *testing.T) {
	t.Parallel()
	grace := "mode = \"grace\"\ngrace_until = " + t0.Add(24*time.Hour).UTC().Format(time.RFC3339) + "\n"
	active := rootsock.Finished{Status: "active", BackupCodes: []string{"bk-one", "bk-two"}}
	wrong := rootsock.Finished{Status: "wrong_code"}
	tests := []struct {
		name     string
		conf     string
		token    bool
		enroller *scriptedEnroller
		answers  []string
		want     protocol.Verdict
		outcome  string
		log      string   // in the log line
		said     []string // told to the user
		begins   int
		finishes int
	}{
		{name: "enrolled", conf: grace + "enroll_at_login = true", enroller: &scriptedEnroller{finishes: []rootsock.Finished{active}},
			answers: []string{"123456", ""}, want: protocol.Success, outcome: "enrolled_at_login", log: "token=p1",
			said: []string{"scan this QR code", "Key (base32): GEZD GNBV", "enrolled and active", "bk-one\n  bk-two"}, begins: 1, finishes: 1},
		{name: "enrolled, backup codes not confirmed", conf: grace + "enroll_at_login = true", enroller: &scriptedEnroller{finishes: []rootsock.Finished{active}},
			answers: []string{"123456"}, want: protocol.Success, outcome: "enrolled_at_login", log: "backup codes may not have been seen",
			begins: 1, finishes: 1},
		{name: "typo then right", conf: grace + "enroll_at_login = true",
			enroller: &scriptedEnroller{finishes: []rootsock.Finished{wrong, {Status: "clock_skew", SkewS: -60}, active}},
			answers:  []string{"111111", "222222", "333333"}, want: protocol.Success, outcome: "enrolled_at_login",
			said: []string{"not right; try again", "about 60 seconds behind"}, begins: 1, finishes: 3},
		{name: "three wrong codes: grace", conf: grace + "enroll_at_login = true",
			enroller: &scriptedEnroller{finishes: []rootsock.Finished{wrong, wrong, wrong}},
			answers:  []string{"111111", "222222", "333333"}, want: protocol.Success, outcome: "enrollment_grace", log: "no right code in 3 tries",
			said: []string{"Enrollment not finished", "mandatory on"}, begins: 1, finishes: 3},
		{name: "skipped", conf: grace + "enroll_at_login = true", enroller: &scriptedEnroller{},
			answers: []string{""}, want: protocol.Success, outcome: "enrollment_grace", log: "skipped by the user",
			said: []string{"Enrollment skipped"}, begins: 1},
		{name: "daemon down", conf: grace + "enroll_at_login = true",
			enroller: &scriptedEnroller{beginErr: errors.New("connect to the bus at unix:path=/x: no such file")},
			want:     protocol.Success, outcome: "enrollment_grace", log: "enrollment at login unavailable: connect to the bus",
			said: []string{"mandatory on"}, begins: 1},
		{name: "daemon refuses", conf: grace + "enroll_at_login = true",
			enroller: &scriptedEnroller{beginErr: &rootsock.Error{Name: syncbus.ErrRefused, Message: "a bootstrap code is required"}},
			want:     protocol.Success, outcome: "enrollment_grace", log: "Error.Refused: a bootstrap code is required", begins: 1},
		{name: "finish fails", conf: grace + "enroll_at_login = true",
			enroller: &scriptedEnroller{finErr: context.DeadlineExceeded}, answers: []string{"123456"},
			want: protocol.Success, outcome: "enrollment_grace", log: "not finished: context deadline exceeded",
			said: []string{"could not be finished now"}, begins: 1, finishes: 1},
		{name: "user hangs up", conf: grace + "enroll_at_login = true", enroller: &scriptedEnroller{},
			want: protocol.AuthErr, outcome: "no_answer", begins: 1},
		{name: "option off", conf: grace, enroller: &scriptedEnroller{}, want: protocol.Success, outcome: "enrollment_grace"},
		{name: "not in grace", conf: "enroll_at_login = true", enroller: &scriptedEnroller{}, want: protocol.AuthErr, outcome: "no_token"},
		{name: "has a token", conf: grace + "enroll_at_login = true", token: true, enroller: &scriptedEnroller{},
			answers: []string{code(step0)}, want: protocol.Success, outcome: "success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.conf)
			f.v.Enroll = tt.enroller
			if tt.token {
				f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
			} else {
				f.addToken("other", "t1", token.Active, totp.DefaultParams, seed)
			}
			got, c := f.auth(req("u"), tt.answers...)
			if got != tt.want || !strings.Contains(f.log.String(), "outcome="+tt.outcome) || !strings.Contains(f.log.String(), tt.log) {
				t.Fatalf("Authenticate = %v, log %s; want %v, outcome=%s, %q", got, f.log, tt.want, tt.outcome, tt.log)
			}
			for _, s := range tt.said {
				if !strings.Contains(c.said(), s) {
					t.Errorf("told %q, want %q in it", c.said(), s)
				}
			}
			if len(tt.enroller.begun) != tt.begins || len(tt.enroller.codes) != tt.finishes {
				t.Errorf("BeginFor %d times, FinishFor %d times; want %d, %d", len(tt.enroller.begun), len(tt.enroller.codes), tt.begins, tt.finishes)
			}
			for _, b := range tt.enroller.begun {
				if b != "u" {
					t.Errorf("BeginFor(%q), want the authenticating user", b)
				}
			}
			// Neither the key nor a backup code nor a typed code is ever logged.
			for _, secret := range append([]string{totp.EncodeSecret(seed), "bk-one", "123456"}, tt.answers...) {
				if secret != "" && strings.Contains(f.log.String(), secret) {
					t.Errorf("log holds %q: %s", secret, f.log)
				}
			}
			if tt.begins > 0 && tt.enroller.beginErr == nil && !strings.Contains(c.said(), "▀") && !strings.Contains(c.said(), "▄") {
				t.Errorf("no QR code was shown: %q", c.said())
			}
			if strings.Contains(c.said(), "\x1b") {
				t.Error("PAM text holds escape sequences")
			}
		})
	}
}

func TestGroups(t *testing.T) {
	for in, want := range map[string]string{"": "", "ABC": "ABC", "ABCD": "ABCD", "ABCDEFGHI": "ABCD EFGH I"} {
		if got := groups(in); got != want {
			t.Errorf("groups(%q) = %q, want %q", in, got, want)
		}
	}
}
