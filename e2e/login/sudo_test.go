//go:build linux

package login

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestSudo runs the real sudo as a test user in a terminal session. Its PAM service (set with
// the sudoers option pam_service for that user only) asks pam_totp.so alone, with sudo_freshness:
// a code verified once spares the second sudo of the same session, a new session is asked again.
// sudo's own timestamp is off (timestamp_timeout=0), so it cannot hide the module's freshness.
// It runs once through the helper and once through a totp-syncd's resident verifier.
func TestSudo(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testSudo(t, w.verifier) })
	}
}

func testSudo(t *testing.T, verifier bool) {
	f, session := sudoFixture(t, conf{Sections: "[policy.sudo]\nsudo_freshness = \"5m\"\n", Verifier: verifier})
	f.wantAnswered(t)
	tok := f.token()
	const promptText = "Verification code:"
	const timeout = 20 * time.Second
	s := f.nowStep(tok)

	t.Run("code, then fresh in the same session", func(t *testing.T) {
		tm := session(t, `sudo true; echo "rc1=$?"; sudo true; echo "rc2=$?"`)
		if _, _, err := tm.Expect(timeout, promptText); err != nil {
			t.Fatalf("first sudo: %v", err)
		}
		tm.Send(code(tok, s) + "\r")
		if _, _, err := tm.Expect(timeout, "rc1=0"); err != nil {
			t.Fatalf("first sudo with a good code: %v", err)
		}
		i, _, err := tm.Expect(timeout, promptText, "rc2=0", "rc2=1")
		switch {
		case err != nil:
			t.Fatalf("second sudo: %v", err)
		case i == 0:
			t.Fatalf("second sudo in the same session asked for a code again")
		case i == 2:
			t.Errorf("second sudo in the same session failed")
		}
		t.Logf("screen:\n%s", tm.Screen())
		if exit, err := tm.Wait(timeout); err != nil || exit != 0 {
			t.Errorf("session exit %d, %v", exit, err)
		}
	})

	t.Run("new session is asked; wrong code refused", func(t *testing.T) {
		tm := session(t, `sudo true; echo "rc=$?"`)
		i, _, err := tm.Expect(timeout, promptText, "rc=")
		switch {
		case err != nil:
			t.Fatalf("sudo: %v", err)
		case i == 1:
			t.Fatalf("sudo in a new session did not ask for a code")
		}
		tm.Send(wrongCode(tok) + "\r")
		// sudo calls PAM with PAM_SILENT; errors_when_silent still tells the user why.
		i, _, err = tm.Expect(timeout, "Verification failed.", "rc=0", "rc=1", promptText)
		switch {
		case err != nil:
			t.Fatalf("sudo with a wrong code: %v", err)
		case i != 0:
			t.Errorf("sudo with a wrong code did not say why it failed (matched %d)", i)
		}
		i, _, err = tm.Expect(timeout, "rc=0", "rc=1", promptText)
		switch {
		case err != nil:
			t.Fatalf("sudo with a wrong code: %v", err)
		case i == 0:
			t.Errorf("sudo with a wrong code succeeded")
		case i == 2:
			t.Errorf("sudo asked again after a wrong code (passwd_tries=1)")
		}
	})

	t.Run("new session, next code", func(t *testing.T) {
		tm := session(t, `sudo true; echo "rc=$?"`)
		if _, _, err := tm.Expect(timeout, promptText); err != nil {
			t.Fatalf("sudo: %v", err)
		}
		tm.Send(code(tok, s+1) + "\r")
		if _, _, err := tm.Expect(timeout, "rc=0"); err != nil {
			t.Errorf("sudo with the next code: %v", err)
		}
	})

	// sudo still parses its whole configuration with the drop-in in place.
	if out, err := exec.Command("visudo", "-c", "-q").CombinedOutput(); err != nil {
		t.Errorf("visudo -c with the drop-in installed: %v: %s", err, out)
	}
}

// sudoFixture makes a test user and a fixture of c whose PAM service, set with the sudoers
// option pam_service for that user only, asks pam_totp.so alone (policy sudo,
// errors_when_silent); sudo's own timestamp is off (timestamp_timeout=0) and it asks once
// (passwd_tries=1). The session function starts a login session of the user on a new terminal
// running a shell script.
func sudoFixture(t *testing.T, c conf) (*fixture, func(t *testing.T, script string) *pamtest.Terminal) {
	needRoot(t)
	needTools(t, "sudo", "visudo")
	needNewSessions(t)
	t.Parallel()
	user := pamtest.AddUser(t, userPrefix)
	uid, gid := lookupIDs(t, user)
	f := newFixture(t, user, c)

	service := "pamtotp-sudo-" + pamtest.RandName(8)
	writeSystemFile(t, "/etc/pam.d/"+service, strings.Join([]string{
		f.moduleLine("policy=sudo errors_when_silent"),
		"account required pam_permit.so",
		"session required pam_permit.so",
	}, "\n")+"\n", 0o644)

	// A broken drop-in would break sudo for everyone: check it with visudo before installing.
	rules := fmt.Sprintf("Defaults:%[1]s pam_service=%[2]s\nDefaults:%[1]s timestamp_timeout=0\n"+
		"Defaults:%[1]s passwd_tries=1\n%[1]s ALL=(ALL) ALL\n", user, service)
	draft := filepath.Join(f.dir, "sudoers")
	writeFile(t, draft, []byte(rules), 0o440)
	if out, err := exec.Command("visudo", "-c", "-q", "-f", draft).CombinedOutput(); err != nil {
		t.Fatalf("visudo -c: %v: %s", err, out)
	}
	writeSystemFile(t, "/etc/sudoers.d/pamtotp-test-"+pamtest.RandName(8), rules, 0o440)

	// session starts a login session of the user on a new terminal running script.
	session := func(t *testing.T, script string) *pamtest.Terminal {
		cmd := childCmd("exec", execChildSpec{
			UID: uid, GID: gid, NewAuditSession: true,
			Argv: []string{"/bin/sh", "-c", script},
			Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "TERM=dumb", "LANG=C",
				"USER=" + user, "LOGNAME=" + user, "SHELL=/bin/sh"},
		})
		return pamtest.StartTerminal(t, cmd, uid)
	}
	return f, session
}

// TestSudoHostileShell: sudo from a shell whose working directory the helper could not read and
// whose limits would break it (no file may grow, few descriptors) still verifies a code, since
// the module's child starts in / with limits of its own; and after a wrong code the user reads
// how long the back-off lasts, although sudo calls PAM with PAM_SILENT. The shell lowers its
// soft limits: hard limits a user lowered are raised only by a root that holds
// CAP_SYS_RESOURCE, which test containers often lack (TestChildLimits covers both). Through the
// helper only: it is about the module's child; a resident verifier never sees the user's shell.
func TestSudoHostileShell(t *testing.T) {
	f, session := sudoFixture(t, conf{Sections: "[policy.sudo]\n",
		Rate: "free_failures = 0\ninitial_backoff = \"10m\"\nmax_backoff = \"20m\"\nlockout_after = 10"})
	tok := f.token()
	s := f.nowStep(tok)
	const timeout = 20 * time.Second
	// Searchable, not readable by the user: the shell can cd there, nobody can list it.
	cwd, err := os.MkdirTemp("", "pamtotp-cwd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cwd) })
	if err := os.Chmod(cwd, 0o711); err != nil {
		t.Fatal(err)
	}
	hostile := fmt.Sprintf(`cd %s && ls . >/dev/null 2>&1; echo "ls=$?"; ulimit -S -f 0 && ulimit -S -n 24 && ulimit -S -c unlimited && `, cwd)

	tm := session(t, hostile+`sudo true; echo "rc=$?"`)
	if _, _, err := tm.Expect(timeout, "ls=2", "ls=1"); err != nil {
		t.Fatalf("the working directory should be unreadable to the user: %v\n%s", err, tm.Screen())
	}
	if _, _, err := tm.Expect(timeout, "Verification code:"); err != nil {
		t.Fatalf("sudo under the hostile shell: %v\n%s", err, tm.Screen())
	}
	tm.Send(code(tok, s) + "\r")
	if i, _, err := tm.Expect(timeout, "rc=0", "rc=1"); err != nil || i != 0 {
		t.Fatalf("sudo with a good code under the hostile shell: matched %d, %v\n%s", i, err, tm.Screen())
	}

	tm = session(t, hostile+`sudo true; echo "rc=$?"`)
	if _, _, err := tm.Expect(timeout, "Verification code:"); err != nil {
		t.Fatalf("sudo: %v", err)
	}
	tm.Send(wrongCode(tok) + "\r")
	if _, _, err := tm.Expect(timeout, "Too many failed codes; try again in 10 minutes."); err != nil {
		t.Errorf("sudo after a wrong code did not say how long the back-off lasts: %v\n%s", err, tm.Screen())
	}
	if i, _, err := tm.Expect(timeout, "rc=1", "rc=0"); err != nil || i != 0 {
		t.Errorf("sudo with a wrong code: matched %d, %v", i, err)
	}
}
