//go:build linux

package pamtest

import (
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Log is where a started program writes its output and where a test reads it back
// (busapitest.SyncBuffer is one).
type Log interface {
	io.Writer
	String() string
}

// StartSSHD starts bin, an sshd given by its absolute path (sshd re-executes itself; its program
// name is its PAM service), in the foreground with the config file cfg and its output into log.
// It returns once addr answers with an SSH banner, and stops sshd in t.Cleanup, showing its log
// when the test failed.
func StartSSHD(t testing.TB, bin, cfg, addr string, log Log) {
	t.Helper()
	// Debian's sshd needs its privilege separation directory (systemd's RuntimeDirectory when
	// the ssh service runs). It stays: another sshd on this machine may be using it by now.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-D", "-e", "-f", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	// Ready when it sends its banner.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("sshd exited:\n%s", log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 4)
			_, err = c.Read(b)
			c.Close()
			if err == nil && string(b) == "SSH-" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not answer on %s:\n%s", addr, log.String())
		}
	}
}

// Keygen makes an ed25519 key pair without a passphrase at path (and path.pub) with ssh-keygen
// and returns the public key line.
func Keygen(t testing.TB, path string) string {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
