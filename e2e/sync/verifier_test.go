//go:build linux

package sync

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestResidentVerifier: libpam logins on a node go through its totp-syncd's resident verifier;
// with the daemon stopped (SIGSTOP) they fall back to the helper within connect_ms; a code is
// used once whichever way it came (socket, then helper, and the other way round).
func TestResidentVerifier(t *testing.T) {
	needRoot(t)
	_, n, user, tok := nodeWithToken(t)
	step := nextStep(t)

	n.login(user, code(tok, step)).Want(t, "a code through the resident verifier", pamtest.Success, -1)
	if !n.logHas("login answered by the resident verifier") {
		t.Fatalf("totp-syncd did not answer the login:\n%s", n.readLog())
	}
	answered := n.logCount("login answered by the resident verifier")
	if got := n.metric("pam_totp_verifier_logins_total", `{verdict="success"}`); got != 1 {
		t.Errorf("pam_totp_verifier_logins_total{verdict=\"success\"} = %v, want 1", got)
	}

	n.proc.signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			n.proc.signal(syscall.SIGCONT)
		}
	}()
	n.login(user, code(tok, step)).Want(t, "the same code through the helper", pam.ErrAuth, -1)
	n.login(user, code(tok, step+1)).Want(t, "the next code through the helper", pamtest.Success, -1)
	n.proc.signal(syscall.SIGCONT)
	stopped = false
	// The two connections the module gave up on wait in the socket's queue; the daemon reads
	// them now, finds the module gone, and decides nothing.
	eventually(t, 10*time.Second, "the abandoned connections are read", func() (bool, error) {
		return n.logCount("login abandoned") == 2, nil
	})
	n.login(user, code(tok, step+1)).Want(t, "the helper's code again through the resident verifier", pam.ErrAuth, -1)
	if got := n.logCount("login answered by the resident verifier"); got != answered+1 {
		t.Errorf("the resident verifier answered %d logins after it was continued, want 1 (and 2 abandoned)\n%s", got-answered, n.readLog())
	}
}

// TestStandaloneVerifierWithoutBus: a standalone totp-syncd that finds no D-Bus still answers
// logins as the resident verifier.
func TestStandaloneVerifierWithoutBus(t *testing.T) {
	needRoot(t)
	n := newNode(t, nil, nodeOptions{Bus: "unix:path=/nonexistent/pam-totp-test-bus"})
	eventually(t, 10*time.Second, "totp-syncd serves the verifier without the bus", func() (bool, error) {
		return n.logHas("serving the resident verifier"), nil
	})
	user := pamtest.AddUser(t, userPrefix)
	tok := token.Token{User: user, ID: "t1", Name: "phone", Algorithm: totp.SHA1, Digits: 6, Period: 30,
		Secret: []byte("12345678901234567890"), State: token.Active, Created: time.Now().UTC()}
	if err := n.tokens().Update(func(x *store.TokensTx) error { return x.PutToken(tok) }); err != nil {
		t.Fatal(err)
	}
	step := nextStep(t)
	n.login(user, code(tok, step)).Want(t, "a code on a standalone node without a bus", pamtest.Success, -1)
	if !n.logHas("login answered by the resident verifier") {
		t.Errorf("the login did not go through the resident verifier:\n%s", n.readLog())
	}
}

// TestVerifierKilledDuringLogins: 8 workers log in at once (each its own user: a valid code,
// then wrong ones) while the node's totp-syncd is killed with SIGKILL and started again. Every
// login ends in a verdict; no wrong code is ever accepted; a valid code is accepted, or denied
// as a system error when the daemon died in the middle of its exchange (never accepted twice).
func TestVerifierKilledDuringLogins(t *testing.T) {
	needRoot(t)
	c := pamtest.NewCA(t, pamtest.PrivateDir(t), "ca")
	r := startRegistry(t, c, regOptions{})
	n := newNode(t, r, nodeOptions{})
	const workers, wrong = 8, 6
	users := make([]string, workers)
	toks := make([]token.Token, workers)
	for i := range users {
		users[i] = pamtest.AddUser(t, userPrefix)
		r.addUser(users[i])
		toks[i], _ = r.addToken(users[i], "phone")
	}
	n.waitRev(r.rev(), 10*time.Second)
	step := nextStep(t)

	results := make([][]pamtest.Result, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = append(results[i], n.login(users[i], code(toks[i], step)))
			for range wrong {
				results[i] = append(results[i], n.login(users[i], wrongCode(toks[i], step)))
			}
		}()
	}
	time.Sleep(5 * time.Millisecond) // into the logins; not a wait for a time step
	n.proc.kill()
	n.start()
	wg.Wait()

	for i, rs := range results {
		for j, res := range rs {
			switch {
			case res.Fatal != "":
				t.Errorf("worker %d login %d: no verdict: %s", i, j, res.Fatal)
			case j > 0 && res.Code == pamtest.Success:
				t.Errorf("worker %d: a wrong code was accepted", i)
			case j == 0 && res.Code != pamtest.Success && res.Code != pam.ErrSystem:
				t.Errorf("worker %d: the valid code got %s, want success (or a system error if the daemon died during it)",
					i, pamtest.Name(res.Code))
			}
		}
	}
	// Afterwards (through the restarted daemon or the helper) no accepted code is accepted
	// again; one whose exchange the kill cut may be (it was never accepted).
	cut := 0
	for i := range workers {
		if results[i][0].Code != pamtest.Success {
			cut++
			continue
		}
		if res := n.login(users[i], code(toks[i], step)); res.Code == pamtest.Success {
			t.Errorf("worker %d: the valid code was accepted a second time", i)
		}
	}
	t.Logf("%d of %d valid logins were cut by the kill (denied as a system error)", cut, workers)
	n.login(users[0], code(toks[0], step+1)).Want(t, "the next code after the restart", pamtest.Success, -1)
}

// wrongCode is a code of tok that matches no step near step.
func wrongCode(tok token.Token, step uint64) string {
	near := map[string]bool{}
	for d := uint64(0); d <= 4; d++ {
		near[code(tok, step+d-2)] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", (i*7919)%1000000); !near[c] {
			return c
		}
	}
}
