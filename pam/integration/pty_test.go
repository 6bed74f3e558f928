//go:build linux

package integration

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

// term runs a program on a new pseudo-terminal, as the leader of a new session with the
// terminal as its controlling tty (what sshd or login give a user), and lets a test read the
// screen and type, like expect(1).
type term struct {
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

// startTerm starts cmd on a new pty. owner >= 0 becomes the owner of the terminal device, as
// login makes the user the owner of theirs.
func startTerm(t *testing.T, cmd *exec.Cmd, owner int) *term {
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
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		t.Fatalf("pty: %v %v", err, ierr)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if owner >= 0 {
		if err := slave.Chown(owner, -1); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	tm := &term{t: t, cmd: cmd, master: master, readDone: make(chan struct{}), waitDone: make(chan struct{})}
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
			t.Logf("terminal of %s:\n%s", cmd.Args[0], tm.screen())
		}
	})
	return tm
}

// screen is everything the program wrote so far.
func (tm *term) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return string(tm.out)
}

// expect waits until one of the patterns appears in output not yet matched, and returns its
// index and the text before it. A program that exits or a timeout is an error.
func (tm *term) expect(timeout time.Duration, patterns ...string) (int, string, error) {
	deadline := time.Now().Add(timeout)
	for {
		tm.mu.Lock()
		rest := string(tm.out[tm.seen:])
		best, at := -1, len(rest)
		for i, p := range patterns {
			if j := strings.Index(rest, p); j >= 0 && j < at {
				best, at = i, j
			}
		}
		if best >= 0 {
			tm.seen += at + len(patterns[best])
			tm.mu.Unlock()
			return best, rest[:at], nil
		}
		tm.mu.Unlock()
		select {
		case <-tm.readDone:
			return -1, rest, fmt.Errorf("program ended before printing any of %q", patterns)
		default:
		}
		if time.Now().After(deadline) {
			return -1, rest, fmt.Errorf("none of %q within %v", patterns, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send types s.
func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.master.Write([]byte(s)); err != nil {
		tm.t.Fatalf("type into terminal: %v", err)
	}
}

// wait returns the program's exit status; a program still running after timeout is killed.
func (tm *term) wait(timeout time.Duration) (int, error) {
	select {
	case <-tm.waitDone:
	case <-time.After(timeout):
		_ = tm.cmd.Process.Kill()
		<-tm.waitDone
		return -1, fmt.Errorf("%s still running after %v", tm.cmd.Args[0], timeout)
	}
	// Let the reader drain what the program wrote last.
	select {
	case <-tm.readDone:
	case <-time.After(2 * time.Second):
	}
	var ee *exec.ExitError
	if errors.As(tm.waitErr, &ee) {
		return ee.ExitCode(), nil
	}
	if tm.waitErr != nil {
		return -1, tm.waitErr
	}
	return 0, nil
}
