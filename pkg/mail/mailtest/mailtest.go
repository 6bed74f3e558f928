// Package mailtest runs a real SMTP relay for tests: pkg/mail/testdata/smtpd.py on Debian's
// python3-aiosmtpd, on a free loopback port, writing each message it accepts to a file. Tests of
// package mail and the end-to-end suites use it; it skips a test when aiosmtpd is missing.
package mailtest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Relay is a running smtpd.py.
type Relay struct {
	Addr string // 127.0.0.1:PORT
	Dir  string // one *.eml file per message, with X-Test-From/To/TLS/Auth headers first
}

// script is smtpd.py beside this package.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "smtpd.py")
}

// python finds a python3 with aiosmtpd, or skips t.
func python(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import aiosmtpd").Run() == nil {
			return p
		}
	}
	t.Skip("python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd): no real SMTP relay to test against")
	return ""
}

// lockedBuffer collects the relay's stderr from its goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs the relay with smtpd.py's extra arguments (TLS, AUTH) until the test ends.
func Start(t testing.TB, args ...string) *Relay {
	t.Helper()
	py := python(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command(py, append([]string{script(), port, dir}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close() // smtpd.py stops when stdin closes
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "READY"
		io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("smtpd.py did not start: %s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("smtpd.py did not start within 20s: %s", stderr.String())
	}
	return &Relay{Addr: addr, Dir: dir}
}

// Messages returns every message received so far.
func (r *Relay) Messages(t testing.TB) []string { return r.MessagesTo(t, "") }

// MessagesTo returns the messages received so far for the recipient to ("" : all).
func (r *Relay) MessagesTo(t testing.TB, to string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(r.Dir, "*.eml"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if to == "" || strings.Contains(string(b), "X-Test-To: "+to+"\n") {
			out = append(out, string(b))
		}
	}
	return out
}
