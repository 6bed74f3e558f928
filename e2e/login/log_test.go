//go:build linux

package login

import (
	"encoding/hex"
	"errors"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const devLog = "/dev/log"

// TestSyslog captures what the helper, and then the resident verifier, sends to /dev/log: one
// line per authentication with user=, service= and outcome=, and never a code, the secret or a
// backup code. It needs to own /dev/log, so it runs only where no syslog daemon does (CI), and not
// in parallel with other tests.
func TestSyslog(t *testing.T) {
	needRoot(t)
	if _, err := os.Lstat(devLog); err == nil {
		t.Skipf("%s exists (a syslog daemon or journald listens here): this test creates its own %s to read the helper's lines", devLog, devLog)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s: %v", devLog, err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: devLog, Net: "unixgram"})
	if err != nil {
		t.Skipf("cannot create %s: %v", devLog, err)
	}
	var (
		mu    sync.Mutex
		lines []string
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, string(buf[:n]))
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
		if err := os.Remove(devLog); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: %v", err)
		}
	})

	// The resident verifier's auth log goes to the same /dev/log, tagged as the helper's: its
	// totp-syncd starts after /dev/log exists, so it finds it at its first line.
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Verifier: w.verifier})
			f.wantAnswered(t)
			checkSyslog(t, f, func() []string {
				mu.Lock()
				defer mu.Unlock()
				return append([]string(nil), lines...)
			})
		})
	}
}

// checkSyslog runs logins of f and checks the lines of them that lines returns.
func checkSyslog(t *testing.T, f *fixture, lines func() []string) {
	tok := f.token()
	backup := f.backupCodes(2)
	s := f.nowStep(tok)
	good, next := code(tok, s), code(tok, s+1)
	wrong := wrongCode(tok)
	steps := []struct {
		answer  string
		want    pam.Error
		outcome string
	}{
		{good, pamtest.Success, "success"},
		{good, pam.ErrAuth, "replay"},
		{wrong, pam.ErrAuth, "wrong_code"},
		{backup[0], pamtest.Success, "backup_code"},
		{backup[0], pam.ErrAuth, "wrong_code"},
		{" " + next[:3] + " " + next[3:], pamtest.Success, "success"},
	}
	for _, st := range steps {
		f.auth(st.answer).Want(t, st.outcome, st.want, 1)
	}

	// The verifier sends its line before the verdict, so every line is queued by now: a marker
	// datagram sent after them arrives after them.
	marker := "pamtotp-it-marker-" + pamtest.RandName(8)
	mc, err := net.Dial("unixgram", devLog)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mc.Write([]byte(marker))
	mc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all = lines()
		if pamtest.AnyContains(all, marker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker datagram not read back from %s", devLog)
		}
	}

	secrets := []string{totp.EncodeSecret(tok.Secret), strings.ToLower(totp.EncodeSecret(tok.Secret)), hex.EncodeToString(tok.Secret)}
	for _, b := range backup {
		norm, _ := backupcode.Normalize(b)
		secrets = append(secrets, b, norm, strings.ToUpper(b))
	}
	var mine []string
	for _, l := range all {
		// The header holds a pid and a time, which may contain any digits: look past it.
		body := l
		if _, after, ok := strings.Cut(l, "]: "); ok {
			body = after
		}
		ours := strings.Contains(l, "user="+f.user+" ")
		if ours {
			mine = append(mine, l)
		}
		for _, secret := range secrets {
			if strings.Contains(body, secret) {
				t.Errorf("log line %q contains the secret or a backup code", l)
			}
		}
		for _, c := range []string{good, next, wrong} {
			if ours && strings.Contains(body, c) {
				t.Errorf("log line %q contains a code", l)
			}
		}
	}
	if len(mine) != len(steps) {
		t.Fatalf("%d log lines for %s, want one per authentication (%d):\n%s", len(mine), f.user, len(steps), strings.Join(mine, "\n"))
	}
	outcome := regexp.MustCompile(` outcome=(\S+)`)
	for i, l := range mine {
		t.Logf("log line %d: %s", i, l)
		for _, key := range []string{"service=" + f.service + " ", "outcome="} {
			if !strings.Contains(l, key) {
				t.Errorf("log line %d %q lacks %q", i, l, key)
			}
		}
		if m := outcome.FindStringSubmatch(l); m == nil || m[1] != steps[i].outcome {
			t.Errorf("log line %d %q: want outcome=%s", i, l, steps[i].outcome)
		}
		// Facility authpriv (10): priority 80 + severity; tagged pam-totp.
		if !strings.HasPrefix(l, "<8") || !strings.Contains(l, " pam-totp[") {
			t.Errorf("log line %d %q: want a syslog line of facility authpriv tagged pam-totp", i, l)
		}
	}
}
