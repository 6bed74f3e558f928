package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
)

// buildTotp builds the totp command into dir (which test users can reach) and returns its path.
func buildTotp(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "totp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// unixSocket makes a socket at path that every user may connect to. With serve false nobody
// listens there any more (a stale socket); with serve true connections are accepted and never
// answered (a bus daemon that hangs).
func unixSocket(t *testing.T, path string, serve bool) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	if !serve {
		l.SetUnlinkOnClose(false)
		l.Close()
		return
	}
	held := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	})
}

// TestDaemonUnreachable runs totp status, list and enroll as a user when totp-syncd cannot be
// reached: each prints one plain sentence on stderr and exits 1, without hanging.
func TestDaemonUnreachable(t *testing.T) {
	t.Parallel()
	b := busapitest.StartBus(t) // a bus on which nobody owns io.github.pamtotp.Sync1
	u := busapitest.User(t, "tdown"+strconv.Itoa(os.Getpid()%100000))
	uid, gid := busapitest.IDs(u)
	bin := buildTotp(t, b.Dir)
	stale, hung := filepath.Join(b.Dir, "stale"), filepath.Join(b.Dir, "hung")
	unixSocket(t, stale, false)
	unixSocket(t, hung, true)

	const notRunning = "totp: totp-syncd is not running on this node (no io.github.pamtotp.Sync1 on the system bus)\n"
	tests := []struct {
		name string
		addr string
		want string // the start of stderr
	}{
		{name: "no totp-syncd on the bus", addr: b.Addr, want: notRunning},
		{name: "no bus socket", addr: "unix:path=" + filepath.Join(b.Dir, "none", "bus"), want: "totp: the system bus is not running on this node (nothing at unix:path="},
		{name: "nobody listening on the socket", addr: "unix:path=" + stale, want: "totp: the system bus is not running on this node (nothing at unix:path="},
		{name: "a bus that never answers", addr: "unix:path=" + hung, want: "totp: the system bus at unix:path=" + hung + " does not answer (is dbus running?)"},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{"status"}, {"list"}, {"enroll"}, {"enroll", "--name", "x"}} {
			t.Run(tt.name+"/"+strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				code, stdout, stderr := runUnreachable(t, bin, uid, gid, tt.addr, args...)
				if code != 1 || !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("totp %s with the bus at %s = exit %d, stderr %q; want exit 1 and one line starting %q",
						strings.Join(args, " "), tt.addr, code, stderr, tt.want)
				}
				if stdout != "" {
					t.Errorf("totp %s printed on stdout: %q", strings.Join(args, " "), stdout)
				}
			})
		}
	}
}

// runUnreachable runs totp as uid/gid with the bus at addr and stdin at /dev/null, and fails
// the test if it does not end within 20 s.
func runUnreachable(t *testing.T, bin string, uid, gid uint32, addr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + addr, "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TERM=xterm-256color"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("totp %s with the bus at %s still running after 20 s; stderr %q", strings.Join(args, " "), addr, errb.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}
