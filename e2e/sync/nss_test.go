//go:build linux

package sync

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
)

// TestCallerFromNSS: a user who exists only in an NSS source other than /etc/passwd (here
// libnss-extrausers; on a real site LDAP through SSSD) is recognised by totp-syncd when they call
// it over D-Bus. totp-syncd runs in a private mount namespace whose /etc/nsswitch.conf names
// extrausers, so the machine's own NSS setup is untouched. A static totp-syncd (pure-Go os/user,
// /etc/passwd only) refused such a user as unknown.
func TestCallerFromNSS(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2"); err != nil {
		if _, err := os.Stat("/usr/lib/libnss_extrausers.so.2"); err != nil {
			t.Skip("libnss-extrausers not installed (make deps installs it)")
		}
	}
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus): ", err)
	}
	// The bus daemon resolves its callers through NSS too, so it runs in the same namespace.
	busDir, err := os.MkdirTemp("", "pamtotp-nss-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(busDir) })
	os.Chmod(busDir, 0o755)
	busConf, socket := busapitest.BusConfig(t, busDir)
	busAddr := "unix:path=" + socket
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	totpBin := filepath.Join(busDir, "totp")
	if err := pamtest.CopyFile(filepath.Join(root, "build", "totp"), totpBin, 0o755); err != nil {
		t.Fatalf("copy build/totp: %v", err)
	}
	n := newNode(t, nil, nodeOptions{Bus: busAddr, NoStart: true})

	// A user and group in an extrausers database of the test's own, with ids /etc/passwd lacks.
	id := 3_900_000 + os.Getpid()%100_000
	name := fmt.Sprintf("ptnss%d", os.Getpid()%100_000)
	extra := t.TempDir()
	os.Chmod(extra, 0o755)
	writeFile(t, filepath.Join(extra, "passwd"), fmt.Sprintf("%s:x:%d:%d:NSS test:/:/usr/sbin/nologin\n", name, id, id), 0o644)
	writeFile(t, filepath.Join(extra, "group"), fmt.Sprintf("%s:x:%d:\n", name, id), 0o644)
	writeFile(t, filepath.Join(extra, "shadow"), "", 0o640)
	nsswitch := filepath.Join(extra, "nsswitch.conf")
	writeFile(t, nsswitch, "passwd: files extrausers\ngroup: files extrausers\nshadow: files\n", 0o644)
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), name+":") {
		t.Fatalf("%s is in /etc/passwd; the test needs a user only NSS knows", name)
	}

	// dbus-daemon and totp-syncd in a mount namespace of their own, with extrausers in its
	// nsswitch.conf; the bus daemon dies with the namespace's last process at the test's end.
	pidFile := filepath.Join(busDir, "bus.pid")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	script := fmt.Sprintf("mount --bind %s /etc/nsswitch.conf && mount --bind %s /var/lib/extrausers && "+
		"{ dbus-daemon --config-file=%s --nofork & echo $! > %s; } && "+
		"i=0; while [ ! -S %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exec %s \"$@\"",
		nsswitch, extra, busConf, pidFile, socket, n.proc.path)
	n.proc.args = append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "totp-syncd"}, n.proc.args...)
	n.proc.path = "/usr/bin/unshare"
	n.start()
	n.waitBus()

	out, code := runCLI(t, totpBin, busAddr, uint32(id), uint32(id), "", "list")
	if code != 0 || !strings.Contains(out, "You have no tokens on this node") {
		t.Fatalf("totp list as %s (known only to NSS extrausers) = exit %d:\n%s", name, code, out)
	}
}
