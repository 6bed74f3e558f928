package enrollcli

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// fake is a Service with scripted enrollment answers.
type fake struct {
	Service
	proofs   []string
	finishes []string // status[:skew]
	codes    []string
}

var fakeURI = totp.Key{Issuer: "HPC", Account: "ann", Secret: []byte("12345678901234567890"), Params: totp.DefaultParams}.URI()

func (f *fake) BeginEnrollment(_ context.Context, name, proof string) (string, string, int64, error) {
	f.proofs = append(f.proofs, proof)
	if proof == "" {
		return "", "", 0, &refusal.Error{Kind: refusal.Refused, Message: "a proof is required: a current code of one of your tokens, or a backup code"}
	}
	return "t\x1b[31m2", fakeURI, time.Now().Add(10 * time.Minute).Unix(), nil
}

func (f *fake) FinishEnrollment(_ context.Context, id, code string) (string, int32, []string, error) {
	st := f.finishes[0]
	f.finishes = f.finishes[1:]
	if st == "clock_skew" {
		return st, -90, nil, nil
	}
	return st, 0, f.codes, nil
}

func (f *fake) SyncNow(context.Context) (int64, error) { return 1, nil }
func (f *fake) ListTokens(context.Context) ([]syncbus.TokenInfo, error) {
	return []syncbus.TokenInfo{{ID: "t\x1b[31m2", Active: true}}, nil
}

func TestEnroll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		finishes []string
		input    string
		wantErr  string
		want     []string
	}{
		{name: "proof, skew, then active", finishes: []string{"clock_skew", "active"}, input: "123456\n111111\n",
			want: []string{ProofPrompt, "seems about 90 seconds behind", "Token t?[31m2 is active on this node now."}},
		{name: "three wrong codes", finishes: []string{"wrong_code", "wrong_code", "wrong_code"}, input: "1\n\n2\n3\n",
			wantErr: "no code verified in 3 tries"},
		{name: "expired", finishes: []string{"expired"}, input: "1\n", wantErr: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fake{finishes: tt.finishes}
			var out bytes.Buffer
			secrets := 0
			c := &CLI{Svc: f, In: bufio.NewReader(strings.NewReader(tt.input)), Out: &out, QR: qrterm.HalfBlocks,
				ReadSecret: func(p string) (string, error) { secrets++; out.WriteString(p); return "654321", nil }}
			err := c.Enroll(context.Background(), "phone")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Enroll = %v, want an error with %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Enroll = %v\n%s", err, out.String())
			}
			if secrets != 1 || len(f.proofs) != 2 || f.proofs[1] != "654321" {
				t.Errorf("Enroll asked %d proofs, began with %q; want one proof, then begin with it", secrets, f.proofs)
			}
			if strings.Contains(out.String(), "\x1b[31m") {
				t.Errorf("Enroll printed a control sequence from the bus:\n%q", out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("Enroll output has no %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// bootFake is a first enrollment at a site with bootstrap = "mail".
type bootFake struct {
	fake
	requestErr error
	requests   int
}

func (f *bootFake) BeginEnrollment(_ context.Context, name, proof string) (string, string, int64, error) {
	f.proofs = append(f.proofs, proof)
	if proof != "BOOT-CODE" {
		return "", "", 0, &refusal.Error{Kind: refusal.Refused, Message: "a bootstrap code is required for a first token: request one by mail first"}
	}
	return "t1", fakeURI, time.Now().Add(10 * time.Minute).Unix(), nil
}

func (f *bootFake) ListTokens(context.Context) ([]syncbus.TokenInfo, error) {
	return []syncbus.TokenInfo{{ID: "t1", Active: true}}, nil
}

func (f *bootFake) RequestBootstrapCode(context.Context) (int64, error) {
	f.requests++
	return time.Now().Add(30 * time.Minute).Unix(), f.requestErr
}

func TestEnrollBootstrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		requestErr error
		wantErr    string
		want       string
	}{
		{name: "mailed", want: "sent to your mail address on record"},
		{name: "mailed a moment ago", requestErr: &refusal.Error{Kind: refusal.Refused,
			Message: "a bootstrap code was mailed less than a minute ago; check your mail"}, want: "check your mail."},
		{name: "no mail address", requestErr: &refusal.Error{Kind: refusal.Refused,
			Message: "there is no mail address on record for you; ask the helpdesk to enroll you"}, wantErr: "no mail address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &bootFake{fake: fake{finishes: []string{"active"}}, requestErr: tt.requestErr}
			var out bytes.Buffer
			c := &CLI{Svc: f, In: bufio.NewReader(strings.NewReader("111111\n")), Out: &out, QR: qrterm.HalfBlocks,
				ReadSecret: func(p string) (string, error) { out.WriteString(p); return " BOOT-CODE ", nil }}
			err := c.Enroll(context.Background(), "phone")
			if f.requests != 1 {
				t.Errorf("RequestBootstrapCode called %d times, want 1", f.requests)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || len(f.proofs) != 1 {
					t.Errorf("Enroll = %v after %d begins, want %q after 1", err, len(f.proofs), tt.wantErr)
				}
				return
			}
			if err != nil || len(f.proofs) != 2 || f.proofs[1] != "BOOT-CODE" {
				t.Fatalf("Enroll = %v, begins %q; want the second begin with the mailed code\n%s", err, f.proofs, out.String())
			}
			for _, w := range []string{tt.want, BootstrapPrompt, "is active on this node now"} {
				if !strings.Contains(out.String(), w) {
					t.Errorf("Enroll output has no %q:\n%s", w, out.String())
				}
			}
		})
	}
}
