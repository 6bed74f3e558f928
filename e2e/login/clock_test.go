//go:build linux

package login

import (
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestProductionHelperIgnoresTestClock: with the clock file ten years ahead, the testclock
// helper takes only the code of ten years ahead, while the helper of `make build`, given the
// same test_clock= module argument, takes only the code of now. Through the helper only: it is
// about the helper (a resident verifier never reads test_clock=; its clock is its environment's).
func TestProductionHelperIgnoresTestClock(t *testing.T) {
	needRoot(t)
	t.Parallel()
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{})
	tok := f.token()
	real := code(tok, f.nowStep(tok))
	f.clock.Set(t, time.Now().AddDate(10, 0, 0))
	far := code(tok, f.nowStep(tok))
	f.addService("production", "helper="+prodHelper) // the last helper= wins
	tests := []struct {
		name, service, answer string
		want                  pam.Error
	}{
		{"testclock helper, code of now", f.service, real, pam.ErrAuth},
		{"production helper, code of ten years ahead", "production", far, pam.ErrAuth},
		{"production helper, code of now", "production", real, pamtest.Success},
		{"testclock helper, code of ten years ahead", f.service, far, pamtest.Success},
	}
	for _, tt := range tests {
		r := f.authWith(pamtest.TxSpec{Service: tt.service, Answers: []string{tt.answer}})
		r.Want(t, tt.name, tt.want, 1)
	}
}

// TestConfigTypoOnlyWarns: an unknown key in pam_totp.conf, which --check-config refuses, is only
// a warning for a login, which goes on as if the key were absent: a typo must not lock everyone
// out. The right code gets in and a wrong one does not, through the helper and the verifier.
func TestConfigTypoOnlyWarns(t *testing.T) {
	needRoot(t)
	t.Parallel()
	for _, verifier := range []bool{false, true} {
		f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Top: "windoww = 2", Verifier: verifier})
		tok := f.token()
		f.auth(wrongCode(tok)).Want(t, "wrong code with a typo in the config", pam.ErrAuth, 1)
		f.auth(code(tok, f.nowStep(tok))).Want(t, "right code with a typo in the config", pamtest.Success, 1)
	}
}
