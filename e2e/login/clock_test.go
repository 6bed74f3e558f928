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
