//go:build linux

package pamtest

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

// Terminal is a program running on a new pseudo-terminal, as the leader of a new session with
// the terminal as its controlling tty (what sshd or login give a user). A test reads the screen
// and types, like expect(1). Expect and Wait return errors; MustExpect and MustWait fail the
// test instead.
type Terminal struct {
	t      testing.TB
	cmd    *exec.Cmd
	master *os.File

	mu   sync.Mutex
	out  []byte
	seen int // out[:seen] has been matched already

	readDone chan struct{}
	waitDone chan struct{}
	waitErr  error
}

// OpenPTY returns a new pty's master and its slave. owner >= 0 becomes the owner of the slave,
// with mode 0620, as grantpt(3) and login do for a user; owner < 0 leaves the device as devpts
// made it.
func OpenPTY(t testing.TB, owner int) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
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
	if owner >= 0 {
		err = slave.Chown(owner, -1) // grantpt
		if err == nil {
			err = slave.Chmod(0o620)
		}
		if err != nil {
			master.Close()
			slave.Close()
			t.Fatal(err)
		}
	}
	return master, slave
}

// StartTerminal starts cmd, as the test's own user, on a new pty from OpenPTY(t, owner). The
// program is killed and the pty closed when the test ends; a failed test logs the screen.
func StartTerminal(t testing.TB, cmd *exec.Cmd, owner int) *Terminal {
	t.Helper()
	return startTerminal(t, cmd, owner, nil)
}

// StartTerminalAs starts cmd as uid/gid on a new pty that uid owns, as sshd runs a user's
// command. The program is killed and the pty closed when the test ends; a failed test logs the
// screen.
func StartTerminalAs(t testing.TB, cmd *exec.Cmd, uid, gid uint32) *Terminal {
	t.Helper()
	return startTerminal(t, cmd, int(uid), &syscall.Credential{Uid: uid, Gid: gid})
}

func startTerminal(t testing.TB, cmd *exec.Cmd, owner int, cred *syscall.Credential) *Terminal {
	t.Helper()
	master, slave := OpenPTY(t, owner)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: cred}
	err := cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	tm := &Terminal{t: t, cmd: cmd, master: master, readDone: make(chan struct{}), waitDone: make(chan struct{})}
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
			t.Logf("terminal of %q:\n%s", cmd.Args, tm.Screen())
		}
	})
	return tm
}

// Master returns the pty's master, for reading the terminal's settings (unix.IoctlGetTermios).
// It is closed when the test ends.
func (tm *Terminal) Master() *os.File { return tm.master }

// Screen is everything the program wrote so far, with the terminal's CR LF as LF.
func (tm *Terminal) Screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return strings.ReplaceAll(string(tm.out), "\r\n", "\n")
}

// Expect waits until one of the patterns appears in output not yet matched, and returns its
// index and the text before it (a newline in a pattern matches the terminal's CR LF, and the
// text has LF). A program that ends first, or a timeout, is an error; the text is then all of
// the output after the last match.
func (tm *Terminal) Expect(timeout time.Duration, patterns ...string) (int, string, error) {
	crlf := make([]string, len(patterns))
	for i, p := range patterns {
		crlf[i] = strings.ReplaceAll(p, "\n", "\r\n")
	}
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
		best, at := -1, len(rest)
		for i, p := range crlf {
			if j := strings.Index(rest, p); j >= 0 && j < at {
				best, at = i, j
			}
		}
		if best >= 0 {
			tm.seen += at + len(crlf[best])
		}
		tm.mu.Unlock()
		if best >= 0 {
			return best, strings.ReplaceAll(rest[:at], "\r\n", "\n"), nil
		}
		rest = strings.ReplaceAll(rest, "\r\n", "\n")
		if ended {
			return -1, rest, fmt.Errorf("the program ended before printing %s", anyOf(patterns))
		}
		if time.Now().After(deadline) {
			return -1, rest, fmt.Errorf("no %s within %v", anyOf(patterns), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anyOf quotes one pattern, or says "any of" a list of them.
func anyOf(patterns []string) string {
	if len(patterns) == 1 {
		return fmt.Sprintf("%q", patterns[0])
	}
	return fmt.Sprintf("any of %q", patterns)
}

// MustExpect is Expect of one pattern that fails the test, showing the output after the last
// match, instead of returning an error.
func (tm *Terminal) MustExpect(timeout time.Duration, pattern string) string {
	tm.t.Helper()
	_, before, err := tm.Expect(timeout, pattern)
	if err != nil {
		tm.t.Fatalf("%v; after the last match:\n%s", err, before)
	}
	return before
}

// Send types s; an error writing to the terminal fails the test.
func (tm *Terminal) Send(s string) {
	tm.t.Helper()
	if _, err := tm.master.Write([]byte(s)); err != nil {
		tm.t.Fatalf("type into the terminal: %v", err)
	}
}

// Wait returns the program's exit status; a program still running after timeout is killed and
// is an error.
func (tm *Terminal) Wait(timeout time.Duration) (int, error) {
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
		return -1, fmt.Errorf("%s: %w", tm.cmd.Args[0], tm.waitErr)
	}
	return 0, nil
}

// MustWait is Wait that fails the test instead of returning an error.
func (tm *Terminal) MustWait(timeout time.Duration) int {
	tm.t.Helper()
	st, err := tm.Wait(timeout)
	if err != nil {
		tm.t.Fatal(err)
	}
	return st
}
