//go:build linux

package sync

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// proc is one started program whose output goes to a log file. It can be stopped gently
// (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and started again with the same arguments.
type proc struct {
	t    *testing.T
	name string
	path string
	args []string
	log  string // output of every run, appended

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has been reaped
	err  error         // the current run's exit
}

// startProc starts path with args, and stops it (SIGKILL) when the test ends; its log is shown
// when the test failed.
func startProc(t *testing.T, name, logFile, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, path: path, args: args, log: logFile}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("%s log (%s):\n%s", p.name, p.log, tail(string(b), 60))
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// start runs the program again (after kill or stop).
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exited() {
		p.t.Fatalf("%s: start while running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", clk.Env()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	p.signal(syscall.SIGCONT) // a stopped process dies of SIGKILL too, but be plain about it
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// stop sends SIGTERM and waits up to d for the exit; it returns the exit error.
func (p *proc) stop(d time.Duration) error {
	p.signal(syscall.SIGTERM)
	if !p.wait(d) {
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.name, d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// running reports whether the current run has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exited()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int { return pamtest.FreePort(t) }

// eventually polls cond every 5 ms until it is true or d passed; it returns how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	return pamtest.Eventually(t, d, what, cond)
}

// runCmd runs a program to its end and returns its stdout; the error carries stderr.
func runCmd(path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), clk.Env())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
