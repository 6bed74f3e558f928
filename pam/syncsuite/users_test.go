//go:build linux

package syncsuite

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// sysMu serialises useradd and userdel: they lock /etc/passwd and fail rather than wait.
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

// addUser creates a local user (no home, /bin/sh), removed when the test ends: the module
// resolves the user through NSS before it asks for a code.
func addUser(t *testing.T) string {
	t.Helper()
	name := "pts-" + randName(8)
	if err := sysCmd("useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sysCmd("userdel", "-f", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}
