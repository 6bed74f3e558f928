package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

func userTokenIDs(t *testing.T, db *Tokens, user string) string {
	t.Helper()
	d, err := db.ReadUser(user)
	if err != nil {
		t.Fatalf("ReadUser(%q) = %v", user, err)
	}
	var ids []string
	for _, tk := range d.Tokens {
		ids = append(ids, tk.ID)
	}
	return fmt.Sprint(ids)
}

// A kept tokens.db handle follows the file: it appears later, is written in place by another
// open (the syncer's Apply, totp-admin), is replaced by a rename (a full resync), goes away, and
// its directory turns unsafe. Each login sees the file as a fresh open would.
func TestResidentTokensFollowTheFile(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	r := NewResident()
	defer r.Close()
	kept := r.Tokens(o)

	if _, err := kept.ReadUser("alice"); !errors.Is(err, ErrNoStore) {
		t.Fatalf("ReadUser before tokens.db exists = %v, want ErrNoStore", err)
	}
	writer := NewTokens(o)
	if err := writer.Update(func(x *TokensTx) error { return x.PutToken(tok("alice", "a")) }); err != nil {
		t.Fatal(err)
	}
	if got := userTokenIDs(t, kept, "alice"); got != "[a]" {
		t.Fatalf("after tokens.db appeared: tokens %s, want [a]", got)
	}
	// Written in place while the handle is open: the writer's exclusive flock is not held off
	// (tempStore's timeout is 200 ms), and the next read sees the write.
	for _, id := range []string{"b", "c"} {
		if err := writer.Update(func(x *TokensTx) error { return x.PutToken(tok("alice", id)) }); err != nil {
			t.Fatalf("in-place write with a kept reader: %v", err)
		}
	}
	if got := userTokenIDs(t, kept, "alice"); got != "[a b c]" {
		t.Fatalf("after in-place writes: tokens %s, want [a b c]", got)
	}
	// A full resync renames a new file over tokens.db.
	stage(t, writer, 7, records(t, 50, "new"))
	if got := userTokenIDs(t, kept, "alice"); got != "[]" {
		t.Errorf("after the rename: alice has %s, want none", got)
	}
	if got := userTokenIDs(t, kept, "u000049"); got != "[new]" {
		t.Errorf("after the rename: u000049 has %s, want [new]", got)
	}
	if m, err := kept.Meta(); err != nil || m.Revision != 7 {
		t.Errorf("Meta after the rename = %+v, %v; want revision 7", m, err)
	}
	// Unsafe directory: refused while it is, read again once it is fixed.
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.ReadUser("u000001"); !errors.Is(err, securefile.ErrUnsafe) {
		t.Errorf("ReadUser in a 0755 directory = %v, want ErrUnsafe", err)
	}
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := userTokenIDs(t, kept, "u000001"); got != "[new]" {
		t.Errorf("after the directory is fixed: %s", got)
	}
	// A file made readable by others is refused as a fresh open refuses it.
	path := filepath.Join(o.Dir, TokensFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.ReadUser("u000001"); !errors.Is(err, securefile.ErrUnsafe) {
		t.Errorf("ReadUser of a 0644 tokens.db = %v, want ErrUnsafe", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.ReadUser("u000001"); !errors.Is(err, ErrNoStore) {
		t.Errorf("ReadUser after tokens.db was removed = %v, want ErrNoStore", err)
	}
}

// The resident's state.db follows removal and re-creation, like per-transaction opens.
func TestResidentStateRemoved(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	r := NewResident()
	defer r.Close()
	st := r.State(o)
	step := func() (v uint64) {
		if err := st.View(func(x *StateTx) error { v = x.LastStep("u", "t"); return nil }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := st.Update(func(x *StateTx) error { return x.SetLastStep("u", "t", 5) }); err != nil {
		t.Fatal(err)
	}
	if got := step(); got != 5 {
		t.Fatalf("LastStep = %d, want 5", got)
	}
	if err := os.Remove(st.Path()); err != nil {
		t.Fatal(err)
	}
	if got := step(); got != 0 {
		t.Fatalf("LastStep after state.db was removed = %d, want 0", got)
	}
	if err := st.Update(func(x *StateTx) error { return x.SetLastStep("u", "t", 9) }); err != nil {
		t.Fatal(err)
	}
	if got := step(); got != 9 {
		t.Fatalf("LastStep after re-creation = %d, want 9", got)
	}
	var v uint64
	if err := NewState(o).View(func(x *StateTx) error { v = x.LastStep("u", "t"); return nil }); err != nil || v != 9 {
		t.Fatalf("a fresh open reads %d, %v; want 9", v, err)
	}
}

// helperEnv makes the test binary a stand-in for exec'd helpers (TestResidentHelperProcess).
const helperEnv = "STORE_TEST_HELPER_DIR"

// Logins through a kept state.db (totp-syncd) and through per-transaction opens in other
// processes (helpers) at the same moment: every read-modify-write of one record is kept, none is
// lost, as with helpers alone. Each writer adds one to the same counter per transaction.
func TestResidentStateSharedWithHelpers(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	o.Timeout = 20 * time.Second
	const daemonWriters, helpers, each = 4, 2, 150
	r := NewResident()
	defer r.Close()
	st := r.State(o)
	incr := func(x *StateTx) error { return x.SetLastStep("u", "counter", x.LastStep("u", "counter")+1) }

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range helpers {
		cmd := exec.Command(exe, "-test.run=^TestResidentHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+o.Dir, "STORE_TEST_HELPER_N="+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	errs := make(chan error, daemonWriters+1)
	for range daemonWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := st.Update(incr); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // readers in between, as logins' pre-prompt reads
		defer wg.Done()
		for range each {
			if err := st.View(func(x *StateTx) error { _ = x.LastStep("u", "counter"); return nil }); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := uint64((daemonWriters + helpers) * each)
	for name, s := range map[string]*State{"kept": st, "fresh": NewState(o)} {
		var got uint64
		if err := s.View(func(x *StateTx) error { got = x.LastStep("u", "counter"); return nil }); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s View: counter = %d, want %d (updates lost)", name, got, want)
		}
	}
	// bbolt's own consistency check: a handle that wrote from a stale freelist would have
	// handed out pages another process's commit still uses.
	db, err := bolt.Open(st.Path(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("state.db fails bbolt's check: %v", err)
	}
}

// TestResidentHelperProcess is not a test: TestResidentStateSharedWithHelpers runs it in other
// processes, each adding one to the counter per transaction through per-transaction opens.
func TestResidentHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("run by TestResidentStateSharedWithHelpers")
	}
	n, _ := strconv.Atoi(os.Getenv("STORE_TEST_HELPER_N"))
	st := NewState(Options{Dir: dir, Timeout: 20 * time.Second})
	for range n {
		err := st.Update(func(x *StateTx) error {
			return x.SetLastStep("u", "counter", x.LastStep("u", "counter")+1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Concurrent writes through one kept state.db are committed in groups; a write that fails is
// rolled back alone: every other write of its group is kept, and each caller gets its own error.
func TestResidentGroupCommitIsolatesErrors(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	o.Timeout = 10 * time.Second
	r := NewResident()
	defer r.Close()
	st := r.State(o)
	refused := errors.New("refused")
	const writers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				user := fmt.Sprintf("w%d", w)
				id := strconv.Itoa(i)
				err := st.Update(func(x *StateTx) error {
					if err := x.SetLastStep(user, id, uint64(i+1)); err != nil {
						return err
					}
					if i%3 == 0 {
						return refused
					}
					return nil
				})
				if (i%3 == 0) != errors.Is(err, refused) || (i%3 != 0 && err != nil) {
					errs <- fmt.Errorf("write %s/%s = %v", user, id, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d of %d writes were committed in a group", st.h.grouped.Load(), writers*each)
	err := NewState(o).View(func(x *StateTx) error {
		for w := range writers {
			for i := range each {
				got, want := x.LastStep(fmt.Sprintf("w%d", w), strconv.Itoa(i)), uint64(i+1)
				if i%3 == 0 {
					want = 0
				}
				if got != want {
					t.Errorf("LastStep(w%d, %d) = %d, want %d", w, i, got, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
