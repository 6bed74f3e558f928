//go:build linux

package pamtest

import (
	"crypto/rand"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// sysMu serialises useradd, groupadd, chpasswd and their removal in this process: they lock
// /etc/passwd and fail rather than wait when another one holds the lock.
var sysMu sync.Mutex

// SysCmd runs a command that changes the user database (useradd, userdel, groupadd, ...), one
// at a time, and retries for a while when another process holds the passwd lock.
func SysCmd(name string, args ...string) error {
	sysMu.Lock()
	defer sysMu.Unlock()
	var out []byte
	var err error
	for range 10 {
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

// AddGroup creates a local group named prefix and eight random letters, removed when the test
// ends.
func AddGroup(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + RandName(8)
	if err := SysCmd("groupadd", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := SysCmd("groupdel", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// AddUser creates a local user named prefix and eight random letters, with the shell /bin/sh
// and no home directory, in the given supplementary groups, removed when the test ends. Each
// package passes its own prefix, so that packages running in parallel never collide.
func AddUser(t testing.TB, prefix string, groups ...string) string {
	t.Helper()
	name := prefix + RandName(8)
	args := []string{"-M", "-d", "/nonexistent", "-s", "/bin/sh"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if err := SysCmd("useradd", append(args, name)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := SysCmd("userdel", "-f", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// SetPassword gives a user a password (for pam_unix before a code).
func SetPassword(t testing.TB, name, password string) {
	t.Helper()
	sysMu.Lock()
	defer sysMu.Unlock()
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v: %s", name, err, out)
	}
}

// RandName returns n random lower-case letters: unique names without digits, so that no name
// can contain a code in a log line.
func RandName(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}
