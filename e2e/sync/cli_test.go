//go:build linux

package sync

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// enrollRun is a `totp enroll` run by a user, answered with the current code of the key it
// printed, up to "active on this node now".
type enrollRun struct {
	t        *testing.T
	secret   []byte
	params   totp.Params
	step     uint64 // the time step of the code typed
	code     string // the code typed
	start    time.Time
	activeAt time.Time
	out      strings.Builder
	lines    chan string
	waited   chan error
	stderr   *busapitest.SyncBuffer
}

// lineHook answers a line of the CLI's output that precedes a prompt: ok says to type reply.
type lineHook func(line string) (reply string, ok bool)

// runEnroll runs `totp enroll --name name` as uid/gid against the service on busAddr and types
// the code of the printed key as soon as it asks (and what hooks answer before that). It
// returns when the CLI says the token is active on this node; finish collects the rest.
func runEnroll(t *testing.T, totpBin, busAddr string, uid, gid uint32, name string, hooks ...lineHook) *enrollRun {
	t.Helper()
	cmd := exec.Command(totpBin, "--bus", busAddr, "enroll", "--name", name, "--qr", "half")
	cmd.Env = []string{"TERM=xterm", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid},
		Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &enrollRun{t: t, stderr: &busapitest.SyncBuffer{}, lines: make(chan string, 1000), waited: make(chan error, 1)}
	cmd.Stderr = e.stderr
	e.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.waited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-e.waited
	})
	go func() {
		defer close(e.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-e.lines:
			if !ok {
				err := <-e.waited
				e.waited <- err
				t.Fatalf("totp enroll ended (%v) without \"active on this node now\":\n%s\nstderr: %s", err, e.out.String(), e.stderr.String())
			}
			e.out.WriteString(line + "\n")
			switch {
			case strings.Contains(line, "otpauth URI:"):
				key, err := totp.ParseURI(strings.TrimSpace(strings.SplitN(line, "otpauth URI:", 2)[1]))
				if err != nil {
					t.Fatalf("the printed otpauth URI does not parse: %v", err)
				}
				e.params = key.Params
			case strings.Contains(line, "secret (base32):"):
				e.secret, err = totp.DecodeSecret(strings.TrimSpace(strings.SplitN(line, "secret (base32):", 2)[1]))
				if err != nil {
					t.Fatalf("the printed base32 secret does not decode: %v", err)
				}
			case strings.Contains(line, "The token is not valid until you type a code"):
				// The prompt follows without a newline: answer now.
				if e.secret == nil || e.params.Period == 0 {
					t.Fatalf("no secret or parameters before the prompt:\n%s", e.out.String())
				}
				e.step = clk.Step(e.params.Period)
				e.code = totp.Code(e.secret, e.params, e.step)
				if _, err := io.WriteString(stdin, e.code+"\n"); err != nil {
					t.Fatalf("write the code: %v", err)
				}
				stdin.Close()
			case strings.Contains(line, "is active on this node now."):
				e.activeAt = time.Now()
				return e
			}
			for _, h := range hooks {
				if reply, ok := h(line); ok {
					if _, err := io.WriteString(stdin, reply+"\n"); err != nil {
						t.Fatalf("write an answer: %v", err)
					}
				}
			}
		case <-timeout:
			t.Fatalf("totp enroll did not say the token is active within 20s:\n%s\nstderr: %s", e.out.String(), e.stderr.String())
		}
	}
}

// finish reads the rest of the output, checks that the CLI exits 0, and returns the whole
// output and the backup codes it printed.
func (e *enrollRun) finish() (string, []string) {
	t := e.t
	t.Helper()
	for line := range e.lines {
		e.out.WriteString(line + "\n")
	}
	select {
	case err := <-e.waited:
		e.waited <- err // for the cleanup
		if err != nil {
			t.Fatalf("totp enroll: %v\n%s\nstderr: %s", err, e.out.String(), e.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("totp enroll did not exit:\n%s", e.out.String())
	}
	text := e.out.String()
	var backup []string
	if _, after, ok := strings.Cut(text, "they are not shown again:\n"); ok {
		for _, l := range strings.Split(after, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.Contains(l, " ") {
				break
			}
			backup = append(backup, l)
		}
	}
	return text, backup
}

// runCLI runs the totp CLI as uid/gid with stdin as input and returns its output and exit code.
func runCLI(t *testing.T, totpBin, busAddr string, uid, gid uint32, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(totpBin, append([]string{"--bus", busAddr}, args...)...)
	cmd.Env = []string{"TERM=xterm", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid},
		Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("totp %v: %v", args, err)
	}
	return string(out), code
}
