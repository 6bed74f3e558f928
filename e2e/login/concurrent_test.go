//go:build linux

package login

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// TestConcurrentSameCode: 50 logins in 50 processes (sshd forks one per connection) present the
// same valid code at once. Exactly one gets in; the other 49 are refused as replays, and state.db
// is consistent afterwards. Through 50 helpers, and through one resident verifier that answers
// them all (50 exchanges at once in one process).
func TestConcurrentSameCode(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testConcurrentSameCode(t, w.verifier) })
	}
}

func testConcurrentSameCode(t *testing.T, verifier bool) {
	needRoot(t)
	t.Parallel()
	const n = 50
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{OpenTimeout: "20s", Verifier: verifier})
	f.wantAnswered(t)
	tok := f.token()
	s := f.nowStep(tok)
	c := code(tok, s)
	spec := txChildSpec{Barrier: true, Txs: []pamtest.TxSpec{{
		Service: f.service, User: f.user, ConfDir: f.pamDir, Answers: []string{c}, Timeout: 60 * time.Second,
	}}}

	type proc struct {
		stdin  io.WriteCloser
		stdout *bufio.Reader
		wait   func() error
		stderr *busapitest.SyncBuffer
	}
	procs := make([]proc, n)
	for i := range procs {
		cmd := childCmd("tx", spec)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &busapitest.SyncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		procs[i] = proc{stdin, bufio.NewReader(stdout), cmd.Wait, stderr}
	}
	// Wait until every process is up, then release them together.
	for i, p := range procs {
		line, err := p.stdout.ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("child %d: %q, %v: %s", i, line, err, p.stderr.String())
		}
	}
	for _, p := range procs {
		if _, err := p.stdin.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}

	results := make([]pamtest.Result, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := io.ReadAll(p.stdout)
			if err == nil {
				err = p.wait()
			}
			if err != nil {
				errs[i] = fmt.Errorf("child %d: %v: %s", i, err, p.stderr.String())
				return
			}
			res, err := parseChild(string(out))
			if err == nil && len(res) != 1 {
				err = fmt.Errorf("%d results", len(res))
			}
			if err != nil {
				errs[i] = fmt.Errorf("child %d: %v", i, err)
				return
			}
			results[i] = res[0]
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	won, replays := 0, 0
	for i, r := range results {
		switch {
		case r.Fatal != "":
			t.Errorf("login %d: %s", i, r.Fatal)
		case r.Code == pamtest.Success:
			won++
		case r.Code == pam.ErrAuth && pamtest.AnyContains(r.Errors, "already been used"):
			replays++
		default:
			t.Errorf("login %d: Authenticate(same code) = %s, errors %q; want PAM_SUCCESS once, else PAM_AUTH_ERR as a replay",
				i, pamtest.Name(r.Code), r.Errors)
		}
	}
	if won != 1 || replays != n-1 {
		t.Errorf("%d logins with one code: %d succeeded, %d refused as replays; want 1 and %d", n, won, replays, n-1)
	}

	// state.db: opens, passes bbolt's consistency check, holds the step, counts no failure.
	db, err := bolt.Open(filepath.Join(f.store, store.StateFile), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open state.db: %v", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drain: the checker stops when the channel is read out
			if first == nil {
				first = err
			}
		}
		return first
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("state.db check: %v", err)
	}
	var last uint64
	var fails store.Failures
	err = store.NewState(f.opts()).View(func(x *store.StateTx) error {
		last = x.LastStep(f.user, tok.ID)
		fails = x.Failures(f.user)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != s {
		t.Errorf("state.db last step of %s = %d, want %d", tok.ID, last, s)
	}
	if fails.Count != 0 {
		t.Errorf("state.db failures of %s = %d, want 0 (replays are no guesses)", f.user, fails.Count)
	}
	if verifier && f.answered() != n {
		t.Errorf("the resident verifier answered %d logins, want all %d", f.answered(), n)
	}
}
