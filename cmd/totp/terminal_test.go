//go:build linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/enrollcli"
	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestEnrollOnTerminal runs `totp enroll` as a user on a pseudo-terminal, as after an SSH
// login (TERM=xterm-256color, a UTF-8 locale, no --qr): the QR code on the screen must scan to
// the printed URI, a wrong code is asked again, the right one activates the token on this node.
// A second token then needs a proof, which is read without echo; a wrong one is refused and
// leaves the user with one token.
func TestEnrollOnTerminal(t *testing.T) {
	t.Parallel()
	b := busapitest.StartBus(t)
	qrtermtest.SkipWithoutZbar(t)
	u := busapitest.User(t, "tpty"+strconv.Itoa(os.Getpid()%100000))
	reg := busapitest.StartRegistry(t, u.Username)
	busapitest.StartNode(t, b, reg)
	bin := buildTotp(t, b.Dir)
	uid, gid := busapitest.IDs(u)
	start := func(t *testing.T, args ...string) *pamtest.Terminal {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + b.Addr, "TERM=xterm-256color", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		return pamtest.StartTerminalAs(t, cmd, uid, gid)
	}
	const codePrompt = "Code shown by the app now: "
	var key totp.Key

	t.Run("first token", func(t *testing.T) {
		tm := start(t, "enroll", "--name", "phone")
		tm.MustExpect(30*time.Second, codePrompt)
		screen := tm.Screen()
		uri := field(t, screen, "otpauth URI:")
		k, err := totp.ParseURI(uri)
		if err != nil {
			t.Fatalf("printed URI does not parse: %v", err)
		}
		key = k
		if k.Account != u.Username {
			t.Errorf("URI account = %q, want %q", k.Account, u.Username)
		}
		if got := field(t, screen, "secret (base32):"); got != totp.EncodeSecret(k.Secret) {
			t.Errorf("printed base32 secret = %q, want the URI's %q", got, totp.EncodeSecret(k.Secret))
		}
		if got, err := qrtermtest.Decode(t, screen); err != nil || got != uri {
			t.Errorf("zbarimg of the QR code on the terminal = %q, %v; want the printed URI %q", got, err, uri)
		}

		wrong := wrongCode(k)
		tm.Send(wrong + "\r")
		// The code prompt echoes as a terminal does: only proofs are read without echo.
		if echoed := tm.MustExpect(10*time.Second, "That code is not right"); !strings.Contains(echoed, wrong) {
			t.Errorf("the code typed at %q was not echoed: %q", codePrompt, echoed)
		}
		tm.MustExpect(10*time.Second, codePrompt)
		tm.Send(totp.Code(k.Secret, k.Params, totp.Step(time.Now(), k.Params.Period)) + "\r")
		tm.MustExpect(30*time.Second, "Your backup codes")
		tm.MustExpect(30*time.Second, "is active on this node now.")
		if st := tm.MustWait(30 * time.Second); st != 0 {
			t.Fatalf("totp enroll exited with %d, want 0", st)
		}
	})
	if key.Secret == nil {
		t.Fatal("no first token")
	}

	t.Run("second token with a wrong proof", func(t *testing.T) {
		tm := start(t, "enroll", "--name", "second")
		tm.MustExpect(30*time.Second, "You have a token already: adding another needs a proof.")
		tm.MustExpect(10*time.Second, enrollcli.ProofPrompt)
		proof := wrongCode(key)
		tm.Send(proof + "\r")
		after := tm.MustExpect(30*time.Second, "totp: the proof was not accepted")
		if strings.TrimSpace(after) != "" {
			t.Errorf("between the proof prompt and the refusal the terminal shows %q, want nothing (no echo)", after)
		}
		if st := tm.MustWait(30 * time.Second); st == 0 {
			t.Errorf("totp enroll with a wrong proof exited with 0, want non-zero")
		}
		if s := tm.Screen(); strings.Contains(s, proof) {
			t.Errorf("the proof %s was echoed:\n%s", proof, s)
		}
	})

	t.Run("Ctrl-C at the proof prompt", func(t *testing.T) {
		tm := start(t, "enroll", "--name", "tablet")
		tm.MustExpect(10*time.Second, enrollcli.ProofPrompt)
		tm.Send("\x03")
		tm.MustExpect(10*time.Second, "totp: interrupted")
		if st := tm.MustWait(10 * time.Second); st != 130 {
			t.Errorf("totp enroll after Ctrl-C exited with %d, want 130", st)
		}
		// The terminal's echo, switched off for the hidden proof, is back on (the master reads
		// the pty's settings).
		tio, err := unix.IoctlGetTermios(int(tm.Master().Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			t.Error("the terminal's echo is still off after Ctrl-C at a hidden prompt")
		}
	})

	t.Run("still one token", func(t *testing.T) {
		tm := start(t, "list")
		if st := tm.MustWait(30 * time.Second); st != 0 {
			t.Fatalf("totp list exited with %d", st)
		}
		rows := tokenRows(tm.Screen())
		if len(rows) != 1 || !strings.Contains(rows[0], "phone") || !strings.HasSuffix(rows[0], "yes") {
			t.Errorf("totp list rows = %q, want the one active token phone", rows)
		}
		var toks []token.Info
		reg.Admin(200, "GET", "/v1/admin/users/"+u.Username+"/tokens", nil, &toks)
		if len(toks) != 1 || toks[0].Name != "phone" {
			t.Errorf("the registry has tokens %+v, want only phone", toks)
		}
	})
}

// wrongCode is a code that k shows at no step within 11 of now: neither right nor a clock skew.
func wrongCode(k totp.Key) string {
	now := totp.Step(time.Now(), k.Params.Period)
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		ok := true
		for s := now - 11; s <= now+11; s++ {
			if totp.Code(k.Secret, k.Params, s) == c {
				ok = false
			}
		}
		if ok {
			return c
		}
	}
	panic("four codes in a row")
}

// tokenRows returns the rows of `totp list` below its header.
func tokenRows(out string) []string {
	var rows []string
	header := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "ID "):
			header = true
		case header && l != "":
			rows = append(rows, l)
		}
	}
	return rows
}
