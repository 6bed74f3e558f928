//go:build linux

package login

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// TestPlantedFiles plants symlinks and FIFOs where the login path opens files: each login is
// denied, in bounded time (a FIFO must not hang it), and a symlink's target stays untouched;
// through the helper and through the resident verifier (a FIFO must not hang the daemon either).
// The config cases are decided by the module before it asks either.
func TestPlantedFiles(t *testing.T) {
	needRoot(t)
	user := pamtest.AddUser(t, userPrefix)
	tests := []struct {
		name  string
		plant func(t *testing.T, f *fixture, outside string) // outside: a path beside the store
		want  pam.Error
	}{
		{"state.db symlink to a file", func(t *testing.T, f *fixture, outside string) {
			writeFile(t, outside, []byte("not a database\n"), 0o600)
			symlink(t, outside, filepath.Join(f.store, store.StateFile))
		}, pam.ErrAuthinfoUnavail},
		{"state.db dangling symlink", func(t *testing.T, f *fixture, outside string) {
			symlink(t, outside, filepath.Join(f.store, store.StateFile))
		}, pam.ErrAuthinfoUnavail},
		{"state.db symlink to /etc/shadow-like file", func(t *testing.T, f *fixture, outside string) {
			writeFile(t, outside, []byte("root:$y$j9T$secret:19000:0:99999:7:::\n"), 0o640)
			symlink(t, outside, filepath.Join(f.store, store.StateFile))
		}, pam.ErrAuthinfoUnavail},
		{"state.db FIFO", func(t *testing.T, f *fixture, _ string) {
			mkfifo(t, filepath.Join(f.store, store.StateFile))
		}, pam.ErrAuthinfoUnavail},
		{"state.db directory", func(t *testing.T, f *fixture, _ string) {
			if err := os.Mkdir(filepath.Join(f.store, store.StateFile), 0o700); err != nil {
				t.Fatal(err)
			}
		}, pam.ErrAuthinfoUnavail},
		{"tokens.db FIFO", func(t *testing.T, f *fixture, _ string) {
			path := filepath.Join(f.store, store.TokensFile)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			mkfifo(t, path)
		}, pam.ErrAuthinfoUnavail},
		{"store dir symlink", func(t *testing.T, f *fixture, outside string) {
			if err := os.Rename(f.store, outside); err != nil {
				t.Fatal(err)
			}
			symlink(t, outside, f.store)
		}, pam.ErrAuthinfoUnavail},
		{"config symlink", func(t *testing.T, f *fixture, outside string) {
			if err := os.Rename(f.conf, outside); err != nil {
				t.Fatal(err)
			}
			symlink(t, outside, f.conf)
		}, pam.ErrSystem},
		{"config FIFO", func(t *testing.T, f *fixture, _ string) {
			if err := os.Remove(f.conf); err != nil {
				t.Fatal(err)
			}
			mkfifo(t, f.conf)
		}, pam.ErrSystem},
		{"config world-writable", func(t *testing.T, f *fixture, _ string) {
			if err := os.Chmod(f.conf, 0o666); err != nil {
				t.Fatal(err)
			}
		}, pam.ErrSystem},
		{"config missing", func(t *testing.T, f *fixture, _ string) {
			if err := os.Remove(f.conf); err != nil {
				t.Fatal(err)
			}
		}, pam.ErrSystem},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			shared := sharedVerifier(t, w.verifier)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					testPlantedFile(t, user, shared, tt.plant, tt.want)
				})
			}
		})
	}
}

// testPlantedFile plants a file in a fixture whose logins go to shared's resident verifier (nil:
// the helper) and checks one login.
func testPlantedFile(t *testing.T, user string, shared *fixture, plant func(t *testing.T, f *fixture, outside string), want pam.Error) {
	f := newFixture(t, user, conf{OpenTimeout: "1s", Via: shared})
	f.wantAnswered(t)
	tok := f.token()
	outside := filepath.Join(f.dir, "outside")
	plant(t, f, outside)
	before := snapshot(outside)

	r := f.authWith(pamtest.TxSpec{Answers: []string{code(tok, f.nowStep(tok))}, Timeout: 15 * time.Second})
	r.Want(t, "planted file", want, -1)
	if r.Elapsed > 8*time.Second {
		t.Errorf("Authenticate(planted file) took %v", r.Elapsed)
	}
	if after := snapshot(outside); after != before {
		t.Errorf("symlink target changed: before %q, after %q", before, after)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes a file's existence, type, mode, owner, size, mtime and content (or, for a
// directory, its entries).
func snapshot(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "absent"
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fmt.Sprintf("%v uid=%d size=%d mtime=%v", fi.Mode(), st.Uid, fi.Size(), fi.ModTime())
	switch {
	case fi.Mode().IsRegular():
		c, _ := os.ReadFile(path)
		s += fmt.Sprintf(" content=%q", c)
	case fi.IsDir():
		ents, _ := os.ReadDir(path)
		for _, e := range ents {
			s += " " + e.Name()
		}
	}
	return s
}
