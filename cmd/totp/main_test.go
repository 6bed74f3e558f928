package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// transcript collects a command's output as it arrives.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (tr *transcript) Write(p []byte) (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.Write(p)
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

// waitFor waits until the output holds s the nth time (from 1).
func (tr *transcript) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(tr.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (#%d) in the output:\n%s", s, n, tr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEnrollEndToEnd builds totp and runs `totp enroll` as a user without privileges against
// the real registry, syncer and D-Bus service, then scans the QR code it drew. Stdin is a pipe,
// not a terminal (the answers are read as lines).
func TestEnrollEndToEnd(t *testing.T) {
	b := busapitest.StartBus(t)
	qrtermtest.SkipWithoutZbar(t)
	u := busapitest.User(t, "tcli"+strconv.Itoa(os.Getpid()%100000))
	reg := busapitest.StartRegistry(t, u.Username)
	busapitest.StartNode(t, b, reg)
	bin := filepath.Join(b.Dir, "totp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	uid, gid := busapitest.IDs(u)

	t.Run("enroll", func(t *testing.T) {
		cmd := exec.Command(bin, "enroll", "--name", "phone", "--qr", "half")
		cmd.Env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + b.Addr, "TERM=xterm", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := &transcript{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		const prompt = "Code shown by the app now: "
		out.waitFor(t, prompt, 1)
		uri := field(t, out.String(), "otpauth URI:")
		key, err := totp.ParseURI(uri)
		if err != nil {
			t.Fatalf("printed URI does not parse: %v", err)
		}
		if got := field(t, out.String(), "secret (base32):"); got != totp.EncodeSecret(key.Secret) {
			t.Errorf("printed base32 secret = %q, want the URI's %q", got, totp.EncodeSecret(key.Secret))
		}
		if got, err := qrtermtest.Decode(t, out.String()); err != nil || got != uri {
			t.Errorf("zbarimg of the drawn QR code = %q, %v; want the printed URI %q", got, err, uri)
		}
		io.WriteString(stdin, "123\n") // wrong: one retry is used up
		out.waitFor(t, prompt, 2)
		code := totp.Code(key.Secret, key.Params, totp.Step(time.Now(), key.Params.Period))
		io.WriteString(stdin, code+"\n")
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("totp enroll: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("totp enroll did not end:\n%s", out.String())
		}
		text := out.String()
		for _, want := range []string{"That code is not right", "Your backup codes", "is active on this node now."} {
			if !strings.Contains(text, want) {
				t.Errorf("totp enroll output has no %q:\n%s", want, text)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		cmd := exec.Command(bin, "--bus", b.Addr, "list")
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "phone") || !strings.Contains(string(out), "yes") {
			t.Errorf("totp list = %v\n%s; want the active token phone", err, out)
		}
	})

	t.Run("no daemon", func(t *testing.T) {
		b2 := busapitest.StartBus(t)
		cmd := exec.Command(bin, "--bus", b2.Addr, "list")
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		want := "totp-syncd is not running on this node (no io.github.pamtotp.Sync1 on the system bus)"
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("totp list without a daemon = %v\n%s; want %q", err, out, want)
		}
	})
}

// field returns the value after label on its line.
func field(t *testing.T, out, label string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if _, v, ok := strings.Cut(l, label); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q in the output:\n%s", label, out)
	return ""
}
