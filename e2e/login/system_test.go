//go:build linux

package login

import (
	"os"
	"os/user"
	"strconv"
	"testing"
)

// Prefixes of the users and groups this package adds: e2e/sync uses others, so that the
// packages can run in parallel.
const (
	userPrefix  = "ptt-"
	groupPrefix = "ptg-"
)

func lookupIDs(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// writeSystemFile writes a file outside the test's directories (/etc/pam.d, /etc/sudoers.d)
// and removes it when the test ends. It refuses to replace an existing file.
func writeSystemFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, mode)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// publicDir is a root 0755 directory outside t.TempDir (whose parent is 0700), for files that
// other users must reach: sshd reads authorized_keys with the user's uid.
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pamtotp-it-")
	if err == nil {
		err = os.Chmod(d, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
