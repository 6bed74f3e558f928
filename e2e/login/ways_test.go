//go:build linux

package login

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// TestReplayAcrossWays: a code accepted through one way is refused as a replay through the other
// in the same time step, socket then helper and helper then socket: the resident verifier and the
// helper keep one state.db. The helper's service has socket=none.
func TestReplayAcrossWays(t *testing.T) {
	needRoot(t)
	t.Parallel()
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Verifier: true})
	f.wantAnswered(t)
	f.addService("helper", "socket=none helper="+helperBin) // the real helper: no tripwire here
	tok := f.token()
	s := f.clock.NextStep(t, 30)
	steps := []struct {
		what, service, answer string
		want                  pam.Error
		replay                bool
	}{
		{"code of step s through the resident verifier", f.service, code(tok, s), pamtest.Success, false},
		{"the same code through the helper", "helper", code(tok, s), pam.ErrAuth, true},
		{"code of step s+1 through the helper", "helper", code(tok, s+1), pamtest.Success, false},
		{"the same code through the resident verifier", f.service, code(tok, s+1), pam.ErrAuth, true},
	}
	for _, st := range steps {
		before := f.answered()
		r := f.authWith(pamtest.TxSpec{Service: st.service, Answers: []string{st.answer}})
		r.Want(t, st.what, st.want, 1)
		if st.replay {
			r.WantError(t, st.what, "already been used")
		}
		want := 0
		if st.service == f.service {
			want = 1
		}
		if got := f.answered() - before; got != want {
			t.Errorf("%s: the resident verifier answered %d logins, want %d", st.what, got, want)
		}
	}
	var fails store.Failures
	if err := store.NewState(f.opts()).View(func(x *store.StateTx) error {
		fails = x.Failures(f.user)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fails.Count != 0 {
		t.Errorf("failures of %s = %d, want 0 (replays are no guesses, whichever way they came)", f.user, fails.Count)
	}
}

// TestAbandonedRequest: while a node's totp-syncd is stopped (SIGSTOP), logins give up on its
// resident verifier after connect_ms and the helper decides them: a good code, a login in SSH
// grace, a wrong code. When the daemon goes on (SIGCONT) it reads those requests late: they
// decide nothing (state.db and tokens.db stay as the helper left them: no failure counted, no
// step burned, no grace recorded) and are logged as abandoned, not as answered. Then the
// verifier answers as usual, and knows what the helper did.
func TestAbandonedRequest(t *testing.T) {
	needRoot(t)
	t.Parallel()
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Top: `ssh_grace = "1h"`, Verifier: true})
	f.wantAnswered(t)
	// The service used while the daemon is stopped: a short connect_ms, and the real helper,
	// since falling back is the point here (the fixture's own service keeps its tripwire).
	const connectMS = 200
	f.addService("stopped", fmt.Sprintf("connect_ms=%d helper=%s", connectMS, helperBin))
	tok := f.token()
	s := f.clock.NextStep(t, 30)
	key := "SSH_AUTH_INFO_0=publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyA\n"

	signalSyncd(t, f, syscall.SIGSTOP)
	t.Cleanup(func() { _ = f.syncd.Process.Signal(syscall.SIGCONT) }) // also when the test fails
	steps := []struct {
		what    string
		spec    pamtest.TxSpec
		want    pam.Error
		prompts int
	}{
		{"good code with an SSH key", pamtest.TxSpec{RHost: "192.0.2.7", Env: []string{key}, Answers: []string{code(tok, s)}}, pamtest.Success, 1},
		{"same key again (ssh_grace)", pamtest.TxSpec{RHost: "192.0.2.7", Env: []string{key}}, pamtest.Success, 0},
		{"wrong code from another address", pamtest.TxSpec{RHost: "192.0.2.8", Answers: []string{wrongCode(tok)}}, pam.ErrAuth, 1},
	}
	for _, st := range steps {
		st.spec.Service = "stopped"
		r := f.authWith(st.spec)
		r.Want(t, st.what+" (daemon stopped)", st.want, st.prompts)
		if r.Elapsed < connectMS*time.Millisecond {
			t.Errorf("%s (daemon stopped) took %v, less than connect_ms=%d: was the resident verifier asked?", st.what, r.Elapsed, connectMS)
		}
	}
	state, tokens := dumpDB(t, filepath.Join(f.store, store.StateFile)), dumpDB(t, filepath.Join(f.store, store.TokensFile))
	if !strings.Contains(state, "failures") {
		t.Fatalf("state.db holds no failure after the wrong code: %s", state)
	}

	signalSyncd(t, f, syscall.SIGCONT)
	for deadline := time.Now().Add(10 * time.Second); f.abandoned() < len(steps); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("totp-syncd logged %d abandoned logins, want %d", f.abandoned(), len(steps))
		}
	}
	if n := f.answered(); n != 0 {
		t.Errorf("totp-syncd logged %d of the abandoned logins as answered, want none", n)
	}
	if got := dumpDB(t, filepath.Join(f.store, store.StateFile)); got != state {
		t.Errorf("the abandoned requests changed state.db:\nbefore %s\nafter  %s", state, got)
	}
	if got := dumpDB(t, filepath.Join(f.store, store.TokensFile)); got != tokens {
		t.Errorf("the abandoned requests changed tokens.db")
	}
	if f.abandoned() != len(steps) {
		t.Errorf("totp-syncd logged %d abandoned logins, want %d", f.abandoned(), len(steps))
	}

	// Running again, the verifier answers, on the state the helper left.
	r := f.authWith(pamtest.TxSpec{RHost: "192.0.2.7", Env: []string{key}})
	r.Want(t, "same key again through the resident verifier (ssh_grace)", pamtest.Success, 0)
	r = f.auth(code(tok, s))
	r.Want(t, "the helper's code through the resident verifier", pam.ErrAuth, 1)
	r.WantError(t, "the helper's code through the resident verifier", "already been used")
	f.auth(code(tok, s+1)).Want(t, "next code through the resident verifier", pamtest.Success, 1)
	if n := f.answered(); n != 3 {
		t.Errorf("the resident verifier answered %d logins after SIGCONT, want 3", n)
	}
}

// signalSyncd sends sig to the fixture's totp-syncd.
func signalSyncd(t *testing.T, f *fixture, sig syscall.Signal) {
	t.Helper()
	if err := f.syncd.Process.Signal(sig); err != nil {
		t.Fatalf("signal totp-syncd: %v", err)
	}
}

// abandoned is how many logins the fixture's resident verifier logged as abandoned.
func (f *fixture) abandoned() int {
	b, _ := os.ReadFile(f.syncdLog)
	return strings.Count(string(b), "login abandoned")
}

// dumpDB is every bucket, key and value of a bbolt file, opened read-only.
func dumpDB(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	var dump func(path string, bk *bolt.Bucket) error
	dump = func(path string, bk *bolt.Bucket) error {
		return bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return dump(path+"/"+string(k), bk.Bucket(k))
			}
			fmt.Fprintf(&b, "%s/%x=%x ", path, k, v)
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error { return dump(string(name), bk) })
	}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
