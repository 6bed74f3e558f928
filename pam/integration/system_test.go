//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sysMu serialises useradd, groupadd and their removal: they lock /etc/passwd and fail rather
// than wait when another one holds the lock.
var sysMu sync.Mutex

func sysCmd(name string, args ...string) error {
	sysMu.Lock()
	defer sysMu.Unlock()
	var out []byte
	var err error
	for try := 0; try < 10; try++ {
		out, err = exec.Command(name, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(200 * time.Millisecond) // another process holds the passwd lock
	}
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// addGroup creates a local group, removed when the test ends.
func addGroup(t *testing.T) string {
	t.Helper()
	name := "ptg-" + randName(8)
	if err := sysCmd("groupadd", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sysCmd("groupdel", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// addUser creates a local user with the shell /bin/sh and no home directory, in the given
// supplementary groups, removed when the test ends.
func addUser(t *testing.T, groups ...string) string {
	t.Helper()
	name := "ptt-" + randName(8)
	args := []string{"-M", "-d", "/nonexistent", "-s", "/bin/sh"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if err := sysCmd("useradd", append(args, name)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sysCmd("userdel", "-f", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// setPassword gives a user a password (for pam_unix after password+code).
func setPassword(t *testing.T, name, password string) {
	t.Helper()
	sysMu.Lock()
	defer sysMu.Unlock()
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v: %s", name, err, out)
	}
}

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
