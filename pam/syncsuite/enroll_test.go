//go:build linux

package syncsuite

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pam/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
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
	bus := busapitest.StartBus(t) // skips without dbus-daemon
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	sink := startSMTPSink(t, filepath.Join(root, "pkg", "mail", "testdata", "smtpd.py")) // skips without aiosmtpd

	// The CLI: a copy of build/totp (made by TestMain's `make build`) that the user can run.
	totpBin := filepath.Join(filepath.Dir(bin["totp-syncd"]), "totp")
	if err := pamtest.CopyFile(filepath.Join(root, "build", "totp"), totpBin, 0o755); err != nil {
		t.Fatalf("copy build/totp: %v", err)
	}
	t.Cleanup(func() { os.Remove(totpBin) })

	// The registry, with [mail] pointing at the sink: startRegistry writes no [mail], so stop it,
	// add the section and start it again.
	r := startRegistry(t, newCA(t, privateDir(t), "ca"), regOptions{})
	if err := r.proc.stop(10 * time.Second); err != nil {
		t.Fatalf("stop totp-registry: %v", err)
	}
	f, err := os.OpenFile(r.conf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[mail]\nhost = %q\nfrom = \"totp@registry.test\"\ncontact = \"the test helpdesk\"\n"+
		"starttls = \"never\"\ntimeout = \"5s\"\nretries = 0\n", sink.addr)
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
	n2 := newNode(t, r, nodeOptions{})
	rev := r.rev()
	n1.waitRev(rev, 15*time.Second)
	n2.waitRev(rev, 15*time.Second)
	eventually(t, 10*time.Second, n1.name+" serves the D-Bus API", func() (bool, error) {
		return n1.logHas("D-Bus service") && !n1.logHas("no D-Bus service"), nil
	})

	// Enrollment and login (well under a second) start at least 5 s before a step boundary, so
	// the code typed is the one the registry checks against its current step.
	settle(t, 5*time.Second)
	cmd := exec.Command(totpBin, "--bus", bus.Addr, "enroll", "--name", "phone", "--qr", "half")
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
	stderr := &busapitest.SyncBuffer{}
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-waited
	})

	// Read the output line by line; answer the prompt with the current code of the printed secret.
	var (
		out       strings.Builder
		secret    []byte
		hexSecret string
		params    totp.Params
		enrollStp uint64
		enrollCd  string
		activeAt  time.Time
	)
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(20 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break read
			}
			out.WriteString(line + "\n")
			switch {
			case strings.Contains(line, "otpauth URI:"):
				key, err := totp.ParseURI(strings.TrimSpace(strings.SplitN(line, "otpauth URI:", 2)[1]))
				if err != nil {
					t.Fatalf("the printed otpauth URI does not parse: %v", err)
				}
				params = key.Params
			case strings.Contains(line, "secret (base32):"):
				secret, err = totp.DecodeSecret(strings.TrimSpace(strings.SplitN(line, "secret (base32):", 2)[1]))
				if err != nil {
					t.Fatalf("the printed base32 secret does not decode: %v", err)
				}
				hexSecret = hex.EncodeToString(secret)
			case strings.Contains(line, "The token is not valid until you type a code"):
				// The prompt follows without a newline: answer now.
				if secret == nil || params.Period == 0 {
					t.Fatalf("no secret or parameters before the prompt:\n%s", out.String())
				}
				enrollStp = totp.Step(time.Now(), params.Period)
				enrollCd = totp.Code(secret, params, enrollStp)
				if _, err := io.WriteString(stdin, enrollCd+"\n"); err != nil {
					t.Fatalf("write the code: %v", err)
				}
				stdin.Close()
			case strings.Contains(line, "is active on this node now."):
				activeAt = time.Now()
				break read
			}
		case <-timeout:
			t.Fatalf("totp enroll did not say the token is active within 20s:\n%s\nstderr: %s", out.String(), stderr.String())
		}
	}
	if activeAt.IsZero() {
		err := <-waited
		t.Fatalf("totp enroll ended (%v) without \"active on this node now\":\n%s\nstderr: %s", err, out.String(), stderr.String())
	}

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
	t.Logf("enroll took %v to \"active on this node now\"; node 2 login (code of step s+1) answered %v after it",
		activeAt.Sub(start).Round(time.Millisecond), gap.Round(time.Millisecond))
	if now := totp.Step(time.Now(), params.Period); now != enrollStp {
		t.Logf("note: the time step moved from %d to %d during the test", enrollStp, now)
	}

	// The rest of the output: the CLI must end well; collect the backup codes it printed.
	for line := range lines {
		out.WriteString(line + "\n")
	}
	select {
	case err := <-waited:
		waited <- err // for the cleanup
		if err != nil {
			t.Fatalf("totp enroll: %v\n%s\nstderr: %s", err, out.String(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("totp enroll did not exit:\n%s", out.String())
	}
	text := out.String()
	if !strings.Contains(text, "Security code verified") {
		t.Errorf("totp enroll output has no \"Security code verified\":\n%s", text)
	}
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

	// The mail: exactly one notice to the user, with none of the secrets.
	var mine []string
	eventually(t, 5*time.Second, "the sink receives the enrollment notice", func() (bool, error) {
		mine = sink.messagesTo(t, addr)
		return len(mine) > 0, nil
	})
	time.Sleep(500 * time.Millisecond) // a second notice would be on its way by now
	mine = sink.messagesTo(t, addr)
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

// smtpSink is pkg/mail's testdata/smtpd.py: a real aiosmtpd relay writing each message to dir.
type smtpSink struct {
	addr string
	dir  string
}

// startSMTPSink runs script on a free loopback port until the test ends; it skips without
// python3-aiosmtpd.
func startSMTPSink(t *testing.T, script string) *smtpSink {
	t.Helper()
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import aiosmtpd").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd): no SMTP sink for the notices")
	}
	port := freePort(t)
	s := &smtpSink{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: privateDir(t)}
	cmd := exec.Command(py, script, strconv.Itoa(port), s.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &busapitest.SyncBuffer{}
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
		case <-time.After(5 * time.Second):
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
	return s
}

// messagesTo returns the messages the sink received for recipient to.
func (s *smtpSink) messagesTo(t *testing.T, to string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "*.eml"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "X-Test-To: "+to+"\n") {
			out = append(out, string(b))
		}
	}
	return out
}
