//go:build linux

package sync

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/mail/mailtest"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestEnrollThenLoginElsewhere is the whole self-service path with real processes: a user runs
// the built `totp enroll` (as that user, over a private system-like bus) against node 1's
// totp-syncd, types the first code, and as soon as the CLI says the token is active a libpam
// login on node 2 with the token's next code succeeds. The registry mails the user exactly one
// notice of the new token (to a real aiosmtpd sink), and the notice carries no secret, URI or
// code.
//
// The enrollment consumes the code of step s (the registry records s as used), so the login
// answers the code of s+1, which the ±1 window accepts at once: no waiting for the next step.
func TestEnrollThenLoginElsewhere(t *testing.T) {
	needRoot(t)
	m := newMailSetup(t, "")
	name, addr, uid, gid, bus, totpBin, r, n1, sink := m.name, m.addr, m.uid, m.gid, m.bus, m.totpBin, m.r, m.n1, m.sink
	n2 := newNode(t, r, nodeOptions{})
	rev := r.rev()
	n1.waitRev(rev, 15*time.Second)
	n2.waitRev(rev, 15*time.Second)
	n1.waitBus()

	// Enrollment and login (well under a second) start at the start of a step, so the code
	// typed is the one the registry checks against its current step.
	nextStep(t)
	e := runEnroll(t, totpBin, bus.Addr, uid, gid, "phone")
	secret, params, enrollStp, enrollCd, activeAt := e.secret, e.params, e.step, e.code, e.activeAt

	// At once: a login on node 2 with the next step's code. Node 2 applies the same revision as
	// node 1 within milliseconds; should a loaded machine delay it, the module answers "no token"
	// without a prompt (nothing is counted), so such an answer is retried for at most 2 s.
	loginCode := totp.Code(secret, params, enrollStp+1)
	res := n2.login(name, loginCode)
	for deadline := activeAt.Add(2 * time.Second); res.Code != pamtest.Success && len(res.Prompts) == 0 &&
		time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		res = n2.login(name, loginCode)
	}
	gap := time.Since(activeAt)
	res.Want(t, "login on node 2 right after enrolling on node 1", pamtest.Success, -1)
	// The code that finished enrollment was used at the registry: no node takes it for a login.
	replay := n1.login(name, enrollCd)
	replay.Want(t, "login on node 1 with the code that finished enrollment", pam.ErrAuth, 1)
	replay.WantError(t, "login on node 1 with the code that finished enrollment", "already been used")
	t.Logf("enroll took %v to \"active on this node now\"; node 2 login (code of step s+1) answered %v after it",
		activeAt.Sub(e.start).Round(time.Millisecond), gap.Round(time.Millisecond))
	if now := clk.Step(params.Period); now != enrollStp {
		t.Logf("note: the time step moved from %d to %d during the test", enrollStp, now)
	}

	text, backup := e.finish()
	if !strings.Contains(text, "Security code verified") {
		t.Errorf("totp enroll output has no \"Security code verified\":\n%s", text)
	}
	hexSecret := hex.EncodeToString(secret)

	// The mail: exactly one notice to the user, with none of the secrets.
	var mine []string
	eventually(t, 5*time.Second, "the sink receives the enrollment notice", func() (bool, error) {
		mine = sink.MessagesTo(t, addr)
		return len(mine) > 0, nil
	})
	time.Sleep(500 * time.Millisecond) // a second notice would be on its way by now
	mine = sink.MessagesTo(t, addr)
	if len(mine) != 1 {
		t.Fatalf("the sink holds %d messages to %s, want 1:\n%s", len(mine), addr, strings.Join(mine, "\n-----\n"))
	}
	msg := mine[0]
	if !strings.Contains(msg, "new token added") || !strings.Contains(msg, `"phone"`) {
		t.Errorf("the notice is not about the new token phone:\n%s", msg)
	}
	b32 := totp.EncodeSecret(secret)
	forbidden := map[string]string{
		"base32 secret":  b32,
		"hex secret":     hexSecret,
		"otpauth URI":    "otpauth",
		"secret= param":  "secret=",
		"enroll code":    enrollCd,
		"login code":     loginCode,
		"secret (start)": b32[:16],
	}
	for i, bc := range backup {
		forbidden["backup code "+strconv.Itoa(i)] = bc
	}
	low := strings.ToLower(msg)
	for what, s := range forbidden {
		if s != "" && strings.Contains(low, strings.ToLower(s)) {
			t.Errorf("the notice contains the %s:\n%s", what, msg)
		}
	}
	t.Logf("notice received (%d backup codes checked absent):\n%s", len(backup), msg)
}

// mailSetup is a registry that mails through a real SMTP sink, a user of its scope with a mail
// address, the totp CLI the user can run, and node 1 serving the D-Bus API on a private bus.
type mailSetup struct {
	sink       *mailtest.Relay
	r          *registry
	n1         *node
	bus        *busapitest.Bus
	totpBin    string
	name, addr string
	uid, gid   uint32
}

// newMailSetup starts it all; regExtra is added to the registry's config (e.g. an [enroll]
// section).
func newMailSetup(t *testing.T, regExtra string) *mailSetup {
	t.Helper()
	bus := busapitest.StartBus(t) // skips without dbus-daemon
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	sink := mailtest.Start(t) // skips without aiosmtpd

	// The CLI: a copy of build/totp (made by TestMain's `make build`) that the user can run.
	totpBin := filepath.Join(bus.Dir, "totp")
	if err := pamtest.CopyFile(filepath.Join(root, "build", "totp"), totpBin, 0o755); err != nil {
		t.Fatalf("copy build/totp: %v", err)
	}

	// The registry, with [mail] pointing at the sink: startRegistry writes no [mail], so stop it,
	// add the section and start it again.
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	if err := r.proc.stop(10 * time.Second); err != nil {
		t.Fatalf("stop totp-registry: %v", err)
	}
	f, err := os.OpenFile(r.conf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[mail]\nhost = %q\nfrom = \"totp@registry.test\"\ncontact = \"the test helpdesk\"\n"+
		"starttls = \"never\"\ntimeout = \"5s\"\nretries = 0\n%s", sink.Addr, regExtra)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.restart()

	name := pamtest.AddUser(t, userPrefix)
	addr := name + "@users.test"
	if _, err := r.admin.AddUser(ctx(t), adminclient.NewUser{Name: name, Mail: addr, Scopes: []string{scope}}); err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := busapitest.IDs(u)

	n1 := newNode(t, r, nodeOptions{NoStart: true})
	n1.proc.args = append(n1.proc.args, "--bus", bus.Addr)
	n1.start()
	return &mailSetup{sink: sink, r: r, n1: n1, bus: bus, totpBin: totpBin, name: name, addr: addr, uid: uid, gid: gid}
}

// TestBootstrapByMail: at a site with [enroll] bootstrap = "mail", `totp enroll` of a first
// token has the registry mail a one-time code (through totp-syncd's RequestBootstrapCode), the
// user types it from the mail, and enrollment goes on; the sink gets the code's mail and then
// exactly one notice of the new token, and the notice holds neither the code nor the secret.
func TestBootstrapByMail(t *testing.T) {
	needRoot(t)
	m := newMailSetup(t, "\n[enroll]\nbootstrap = \"mail\"\n")
	m.n1.waitBus()
	nextStep(t)
	var bootCode string
	e := runEnroll(t, m.totpBin, m.bus.Addr, m.uid, m.gid, "phone", func(line string) (string, bool) {
		if !strings.Contains(line, "It was sent to your mail address") {
			return "", false
		}
		var msgs []string
		eventually(t, 10*time.Second, "the bootstrap code reaches the sink", func() (bool, error) {
			msgs = m.sink.MessagesTo(t, m.addr)
			return len(msgs) > 0, nil
		})
		if len(msgs) != 1 || !strings.Contains(msgs[0], "your enrollment code") {
			t.Fatalf("the sink holds %d messages, want the one with the enrollment code:\n%s", len(msgs), strings.Join(msgs, "\n-----\n"))
		}
		_, after, _ := strings.Cut(msgs[0], "your one-time code to enroll a first token is:")
		bootCode = strings.Fields(after)[0]
		return bootCode, true
	})
	text, _ := e.finish()
	if bootCode == "" || !strings.Contains(text, "mails you a one-time code") {
		t.Fatalf("totp enroll did not go through the bootstrap code:\n%s", text)
	}
	var notices []string
	eventually(t, 5*time.Second, "the new-token notice reaches the sink", func() (bool, error) {
		notices = m.sink.MessagesTo(t, m.addr)
		return len(notices) >= 2, nil
	})
	time.Sleep(500 * time.Millisecond) // a further notice would be on its way by now
	notices = m.sink.MessagesTo(t, m.addr)
	added := 0
	for _, msg := range notices {
		if strings.Contains(msg, "new token added") {
			added++
			if strings.Contains(msg, bootCode) || strings.Contains(msg, totp.EncodeSecret(e.secret)) {
				t.Errorf("the notice holds the bootstrap code or the secret:\n%s", msg)
			}
		}
	}
	if len(notices) != 2 || added != 1 {
		t.Fatalf("the sink holds %d messages (%d new-token notices), want the code and one notice:\n%s",
			len(notices), added, strings.Join(notices, "\n-----\n"))
	}
	// The mailed code worked once: a second request to begin with it is refused by the registry.
	out, code := runCLI(t, m.totpBin, m.bus.Addr, m.uid, m.gid, bootCode+"\n", "enroll", "--name", "again")
	if code == 0 {
		t.Errorf("a second enrollment with the used bootstrap code succeeded:\n%s", out)
	}
}

// TestEnrollAtLoginWithRegistry: on a node following a registry, a user in enrollment grace is
// enrolled during a libpam login on node 1 (the helper asks node 1's totp-syncd, which forwards
// to the registry), and right after, a login on node 2 asks for a code and accepts the next one.
func TestEnrollAtLoginWithRegistry(t *testing.T) {
	needRoot(t)
	bus := busapitest.StartBus(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	name := pamtest.AddUser(t, userPrefix)
	if _, err := r.admin.AddUser(ctx(t), adminclient.NewUser{Name: name, Scopes: []string{scope}}); err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	grace := "mode = \"grace\"\ngrace_until = " + time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339)
	n1 := newNode(t, r, nodeOptions{Policy: grace + "\nenroll_at_login = true", Bus: bus.Addr})
	n2 := newNode(t, r, nodeOptions{Policy: grace})
	rev := r.rev()
	n1.waitRev(rev, 15*time.Second)
	n2.waitRev(rev, 15*time.Second)
	n1.waitBus()

	nextStep(t)
	le := &loginEnroller{}
	res := pamtest.Run(pamtest.TxSpec{Service: n1.service, User: name, ConfDir: n1.pamDir, Timeout: 15 * time.Second,
		Respond: le.respond})
	res.Want(t, "login on node 1 that enrolls", pamtest.Success, 2) // the code, then Enter after the backup codes
	res.WantInfo(t, "login on node 1 that enrolls", "enrolled and active")
	enrolled := time.Now()
	rev = r.rev() // the enrollment (a login's claim later is a revision nodes see only at a bookmark)
	// Node 2 gets the token within milliseconds; until then it lets the user in under grace
	// without a prompt, so such an answer is retried for at most 2 s.
	next := totp.Code(le.key.Secret, le.key.Params, le.step+1)
	res = n2.login(name, next)
	for time.Since(enrolled) < 2*time.Second && len(res.Prompts) == 0 {
		time.Sleep(20 * time.Millisecond)
		res = n2.login(name, next)
	}
	res.Want(t, "login on node 2 with the next code", pamtest.Success, 1)
	// The code typed at the enrolling login does not log in again on node 1 either.
	n1.waitRev(rev, 5*time.Second)
	n1.login(name, le.typed).Want(t, "login on node 1 with the enrolling code", pam.ErrAuth, 1)
	t.Logf("node 2 asked for and accepted a code %v after the enrolling login on node 1", time.Since(enrolled).Round(time.Millisecond))
}
