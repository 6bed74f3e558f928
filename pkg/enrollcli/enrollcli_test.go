package enrollcli

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
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
		return "", "", 0, &UserError{Name: busapi.ErrRefused, Message: "a proof is required: a current code of one of your tokens, or a backup code"}
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
func (f *fake) ListTokens(context.Context) ([]busapi.TokenInfo, error) {
	return []busapi.TokenInfo{{ID: "t\x1b[31m2", Active: true}}, nil
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

func TestClean(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"phone", "phone"},
		{"a\x1b]0;x\x07b", "a?]0;x?b"},
		{"rtl\u202eevil", "rtl?evil"},
		{"c1\u009bx", "c1?x"},
		{"bad\xffutf8", "bad?utf8"},
	} {
		if got := Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
