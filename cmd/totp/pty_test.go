//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// terminal runs a program on a new pseudo-terminal as a user, as the leader of a new session
// with the terminal as its controlling tty and the user owning the device (what sshd gives a
// user), and lets a test read the screen and type, like expect(1). It is pam/integration's
// term with credentials.
type terminal struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File

	mu   sync.Mutex
	out  []byte
	seen int // out[:seen] has been matched already

	readDone chan struct{}
	waitDone chan struct{}
	waitErr  error
}

// openPTY returns a new pty's master and its slave, owned by uid.
func openPTY(t *testing.T, uid int) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil { // unlockpt
			n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN) // ptsname
		}
	}); err != nil || ierr != nil {
		master.Close()
		t.Fatalf("pty: %v %v", err, ierr)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	if err := slave.Chown(uid, -1); err != nil { // grantpt
		master.Close()
		slave.Close()
		t.Fatal(err)
	}
	if err := slave.Chmod(0o620); err != nil {
		master.Close()
		slave.Close()
		t.Fatal(err)
	}
	return master, slave
}

// startTerminal starts cmd on a new pty as uid/gid. The program is killed and the pty closed
// when the test ends; a failed test logs the screen.
func startTerminal(t *testing.T, cmd *exec.Cmd, uid, gid uint32) *terminal {
	t.Helper()
	master, slave := openPTY(t, int(uid))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0,
		Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	err := cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	tm := &terminal{t: t, cmd: cmd, master: master, readDone: make(chan struct{}), waitDone: make(chan struct{})}
	go func() {
		defer close(tm.readDone)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			tm.mu.Lock()
			tm.out = append(tm.out, buf[:n]...)
			tm.mu.Unlock()
			if err != nil {
				return // EIO once the last holder of the terminal is gone
			}
		}
	}()
	go func() {
		tm.waitErr = cmd.Wait()
		close(tm.waitDone)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.waitDone:
		default:
			_ = cmd.Process.Kill()
			<-tm.waitDone
		}
		master.Close()
		<-tm.readDone
		if t.Failed() {
			t.Logf("terminal of %q:\n%s", cmd.Args, tm.screen())
		}
	})
	return tm
}

// screen is everything the program wrote so far, with the terminal's CR LF as LF.
func (tm *terminal) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return strings.ReplaceAll(string(tm.out), "\r\n", "\n")
}

// expect waits until pattern appears in output not yet matched and returns the text before
// it (a newline in pattern matches the terminal's CR LF); the test fails if the program ends
// first or after timeout.
func (tm *terminal) expect(timeout time.Duration, pattern string) string {
	tm.t.Helper()
	pattern = strings.ReplaceAll(pattern, "\n", "\r\n")
	deadline := time.Now().Add(timeout)
	for {
		ended := false // read before the output, so that the output is complete when it is set
		select {
		case <-tm.readDone:
			ended = true
		default:
		}
		tm.mu.Lock()
		rest := string(tm.out[tm.seen:])
		j := strings.Index(rest, pattern)
		if j >= 0 {
			tm.seen += j + len(pattern)
		}
		tm.mu.Unlock()
		if j >= 0 {
			return strings.ReplaceAll(rest[:j], "\r\n", "\n")
		}
		if ended {
			tm.t.Fatalf("the program ended before printing %q; after the last match:\n%s", pattern, rest)
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %q within %v; after the last match:\n%s", pattern, timeout, rest)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send types s.
func (tm *terminal) send(s string) {
	tm.t.Helper()
	if _, err := tm.master.Write([]byte(s)); err != nil {
		tm.t.Fatalf("type into the terminal: %v", err)
	}
}

// wait returns the program's exit status; a program still running after timeout is killed
// and fails the test.
func (tm *terminal) wait(timeout time.Duration) int {
	tm.t.Helper()
	select {
	case <-tm.waitDone:
	case <-time.After(timeout):
		_ = tm.cmd.Process.Kill()
		<-tm.waitDone
		tm.t.Fatalf("%s still running after %v", tm.cmd.Args[0], timeout)
	}
	// Let the reader drain what the program wrote last.
	select {
	case <-tm.readDone:
	case <-time.After(2 * time.Second):
	}
	var ee *exec.ExitError
	if errors.As(tm.waitErr, &ee) {
		return ee.ExitCode()
	}
	if tm.waitErr != nil {
		tm.t.Fatalf("%s: %v", tm.cmd.Args[0], tm.waitErr)
	}
	return 0
}
