package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

func tempStore(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return Options{Dir: dir, Timeout: 200 * time.Millisecond}
}

func tok(user, id string) token.Token {
	return token.Token{User: user, ID: id, Name: "phone", Algorithm: totp.SHA1, Digits: 6, Period: 30,
		Secret: []byte("12345678901234567890"), State: token.Active, Created: time.Unix(1700000000, 0).UTC()}
}

func TestTokensRoundTrip(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	db := NewTokens(o)
	err := db.Update(func(x *TokensTx) error {
		for _, tk := range []token.Token{tok("alice", "b"), tok("alice", "a"), tok("alice2", "a"), tok("bob", "z")} {
			if err := x.PutToken(tk); err != nil {
				return err
			}
		}
		return x.ReplaceBackupCodes("alice", []token.BackupCode{{User: "alice", ID: "1", Salt: []byte("s"), Hash: []byte("h")}})
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.ReadUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	// "alice2" shares the prefix "alice" but is another user.
	if len(d.Tokens) != 2 || d.Tokens[0].ID != "a" || d.Tokens[1].ID != "b" || len(d.Backup) != 1 {
		t.Fatalf("ReadUser(alice) = %+v, want tokens a, b and one backup code", d)
	}
	if d.Meta.SchemaVersion != SchemaVersion || d.Meta.Source != "standalone" {
		t.Errorf("meta = %+v", d.Meta)
	}
	db.View(func(x *TokensTx) error {
		if got := x.Users(); fmt.Sprint(got) != "[alice alice2 bob]" {
			t.Errorf("Users() = %v", got)
		}
		return nil
	})
	if err := db.Update(func(x *TokensTx) error { return x.DeleteUser("alice") }); err != nil {
		t.Fatal(err)
	}
	if d, _ := db.ReadUser("alice"); len(d.Tokens)+len(d.Backup) != 0 {
		t.Errorf("after DeleteUser: %+v", d)
	}
	if d, _ := db.ReadUser("alice2"); len(d.Tokens) != 1 {
		t.Errorf("DeleteUser(alice) touched alice2: %+v", d)
	}
	err = db.Update(func(x *TokensTx) error { return x.DeleteToken("bob", "nope") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteToken(missing) = %v, want ErrNotFound", err)
	}
	info, _ := os.Stat(db.Path())
	if info.Mode().Perm() != 0o600 {
		t.Errorf("tokens.db mode = %v, want 0600", info.Mode().Perm())
	}
}

func TestPutTokenValidates(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	bad := map[string]func(*token.Token){
		"empty user":  func(t *token.Token) { t.User = "" },
		"NUL in user": func(t *token.Token) { t.User = "a\x00b" },
		"short secret": func(t *token.Token) {
			t.Secret = []byte("short")
		},
		"digits 5":      func(t *token.Token) { t.Digits = 5 },
		"bad algorithm": func(t *token.Token) { t.Algorithm = "MD5" },
		"bad state":     func(t *token.Token) { t.State = "maybe" },
		"control char":  func(t *token.Token) { t.Name = "ph\x1bone" },
	}
	for name, mutate := range bad {
		tk := tok("u", "1")
		mutate(&tk)
		err := db.Update(func(x *TokensTx) error { return x.PutToken(tk) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("PutToken(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestTokensNeverMeansNoToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr error
	}{
		{"missing", func(t *testing.T, dir string) {}, ErrNoStore},
		{"empty file", func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, TokensFile), nil, 0o600) }, nil},
		{"garbage", func(t *testing.T, dir string) {
			b := make([]byte, 64<<10)
			for i := range b {
				b[i] = byte(i * 7)
			}
			os.WriteFile(filepath.Join(dir, TokensFile), b, 0o600)
		}, nil},
		{"no schema", func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, TokensFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, ErrSchema},
		{"future schema", func(t *testing.T, dir string) {
			NewTokens(Options{Dir: dir}).Update(func(x *TokensTx) error {
				return x.SetMeta(Meta{SchemaVersion: SchemaVersion + 1})
			})
		}, ErrSchema},
		{"group-readable", func(t *testing.T, dir string) {
			NewTokens(Options{Dir: dir}).Update(func(x *TokensTx) error { return nil })
			os.Chmod(filepath.Join(dir, TokensFile), 0o640)
		}, nil},
		{"symlink", func(t *testing.T, dir string) {
			other := t.TempDir()
			os.Chmod(other, 0o700)
			NewTokens(Options{Dir: other}).Update(func(x *TokensTx) error { return x.PutToken(tok("u", "1")) })
			os.Symlink(filepath.Join(other, TokensFile), filepath.Join(dir, TokensFile))
		}, nil},
		{"fifo", func(t *testing.T, dir string) { syscall.Mkfifo(filepath.Join(dir, TokensFile), 0o600) }, nil},
		{"directory", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, TokensFile), 0o700) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := tempStore(t)
			tt.setup(t, o.Dir)
			done := make(chan error, 1)
			go func() { _, err := NewTokens(o).ReadUser("u"); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("ReadUser on %s store = nil error, want an error", tt.name)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("ReadUser on %s store = %v, want %v", tt.name, err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("ReadUser on %s store hangs", tt.name)
			}
		})
	}
}

func TestUnsafeDirectory(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	NewTokens(o).Update(func(x *TokensTx) error { return x.PutToken(tok("u", "1")) })
	os.Chmod(o.Dir, 0o755)
	if _, err := NewTokens(o).ReadUser("u"); err == nil {
		t.Errorf("ReadUser with a 0755 store directory = nil error, want refusal")
	}
	if err := NewState(o).View(func(*StateTx) error { return nil }); err == nil {
		t.Errorf("State.View with a 0755 store directory = nil error, want refusal")
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Chmod(o.Dir, 0o700)
	os.Symlink(o.Dir, link)
	if _, err := NewTokens(Options{Dir: link}).ReadUser("u"); err == nil {
		t.Errorf("ReadUser through a symlinked directory = nil error, want refusal")
	}
}

func TestLockTimeout(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	db := NewTokens(o)
	db.Update(func(x *TokensTx) error { return x.PutToken(tok("u", "1")) })
	// Another writer holds the exclusive lock past the timeout.
	holder, err := bolt.Open(db.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	start := time.Now()
	_, err = db.ReadUser("u")
	if err == nil || !errors.Is(err, bberrors.ErrTimeout) {
		t.Fatalf("ReadUser under a held lock = %v, want timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ReadUser waited %s, want about %s", d, o.Timeout)
	}
}

func TestState(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	s := NewState(o)
	now := time.Unix(1700000000, 0)
	// A missing state.db reads as empty and is not created by a read.
	err := s.View(func(x *StateTx) error {
		if x.LastStep("u", "1") != 0 || x.Failures("u").Count != 0 || x.BackupUsed("u", "1") || x.Grace("u", "ssh", "k", now) {
			t.Errorf("empty state is not empty")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("View created state.db")
	}
	err = s.Update(func(x *StateTx) error {
		x.SetLastStep("u", "1", 42)
		x.SetFailures("u", Failures{Count: 3, Last: now})
		x.UseBackup("u", "b1", now)
		x.SetGrace("u", "ssh", "old", now.Add(-time.Second), now.Add(-2*time.Second))
		return x.SetGrace("u", "ssh", "k", now.Add(time.Hour), now)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(x *StateTx) error {
		if x.LastStep("u", "1") != 42 || x.Failures("u").Count != 3 || !x.BackupUsed("u", "b1") {
			t.Errorf("state not recorded")
		}
		if !x.Grace("u", "ssh", "k", now) || x.Grace("u", "ssh", "k", now.Add(2*time.Hour)) || x.Grace("v", "ssh", "k", now) {
			t.Errorf("grace records wrong")
		}
		return nil
	})
	// Setting a grace record drops the user's expired ones.
	s.Update(func(x *StateTx) error { return x.SetGrace("u", "ssh", "k2", now.Add(time.Hour), now) })
	s.View(func(x *StateTx) error {
		n := 0
		x.tx.Bucket(bucketGrace).ForEach(func(k, v []byte) error { n++; return nil })
		if n != 2 {
			t.Errorf("grace records = %d, want 2 (expired one pruned)", n)
		}
		return nil
	})
	s.Update(func(x *StateTx) error { return x.ResetUser("u") })
	s.View(func(x *StateTx) error {
		if x.LastStep("u", "1") != 0 || x.Failures("u").Count != 0 || x.BackupUsed("u", "b1") || x.Grace("u", "ssh", "k", now) {
			t.Errorf("ResetUser left state behind")
		}
		return nil
	})
}

func TestStateRefusesPlantedFiles(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"symlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			o := tempStore(t)
			target := filepath.Join(t.TempDir(), "target")
			os.WriteFile(target, []byte("keep"), 0o600)
			path := filepath.Join(o.Dir, StateFile)
			if kind == "symlink" {
				os.Symlink(target, path)
			} else {
				syscall.Mkfifo(path, 0o600)
			}
			done := make(chan error, 1)
			go func() {
				done <- NewState(o).Update(func(x *StateTx) error { return x.SetLastStep("u", "1", 1) })
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("Update through a %s = nil error, want refusal", kind)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Update through a %s hangs", kind)
			}
			if b, _ := os.ReadFile(target); string(b) != "keep" {
				t.Errorf("symlink target changed: %q", b)
			}
		})
	}
}

func TestCorruptFailureRecordStaysLocked(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	s := NewState(o)
	s.Update(func(x *StateTx) error { return x.tx.Bucket(bucketFailures).Put([]byte("u"), []byte("{not json")) })
	s.View(func(x *StateTx) error {
		if f := x.Failures("u"); f.Count < 100 || !f.Until.After(time.Now()) {
			t.Errorf("unreadable failure record = %+v, want a lock", f)
		}
		return nil
	})
}

// The first writer of a new state.db must not let a concurrent reader see a half-made file.
func TestFirstWriteRacesReaders(t *testing.T) {
	t.Parallel()
	for round := 0; round < 5; round++ {
		o := tempStore(t)
		o.Timeout = 5 * time.Second
		errs := make(chan error, 16)
		for i := 0; i < 8; i++ {
			go func() { errs <- NewState(o).View(func(x *StateTx) error { x.Failures("u"); return nil }) }()
			go func() {
				errs <- NewState(o).Update(func(x *StateTx) error { return x.SetLastStep("u", "1", 1) })
			}()
		}
		for i := 0; i < 16; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: concurrent first use of state.db: %v", round, err)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(o.Dir, ".*")); len(left) != 0 {
			t.Errorf("temporary files left behind: %v", left)
		}
	}
}
