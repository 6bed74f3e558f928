//go:build linux

package login

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// The test binary re-executes itself for work that needs its own process (concurrent logins,
// other login sessions, a user's shell in a pseudo-terminal): childEnv selects the mode and
// specEnv carries its JSON spec.
const (
	childEnv = "PAMTOTP_IT_CHILD"
	specEnv  = "PAMTOTP_IT_SPEC"
)

// txChildSpec is the work of a "tx" child: transactions run one after the other in one process.
type txChildSpec struct {
	Barrier         bool // print "ready", then wait for one byte on stdin before starting
	NewAuditSession bool // leave the parent's audit session first (when there is one)
	Txs             []pamtest.TxSpec
}

// execChildSpec is the work of an "exec" child: become a session of user UID and exec Argv.
type execChildSpec struct {
	UID, GID        int
	NewAuditSession bool
	Argv, Env       []string
}

const resultPrefix = "RESULT "

func child(mode string) int {
	switch mode {
	case "tx":
		var s txChildSpec
		if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &s); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		if s.NewAuditSession {
			if err := newAuditSession(); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				return 3
			}
		}
		if s.Barrier {
			fmt.Println("ready")
			var b [1]byte
			if _, err := os.Stdin.Read(b[:]); err != nil {
				fmt.Fprintln(os.Stderr, "child: barrier:", err)
				return 2
			}
		}
		var out []pamtest.Result
		for _, tx := range s.Txs {
			out = append(out, pamtest.Run(tx))
		}
		b, _ := json.Marshal(out)
		fmt.Printf("%s%s\n", resultPrefix, b)
		return 0
	case "exec":
		var s execChildSpec
		if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &s); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		if s.NewAuditSession {
			if err := newAuditSession(); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				return 3
			}
		}
		if err := syscall.Setgroups(nil); err != nil {
			fmt.Fprintln(os.Stderr, "child: setgroups:", err)
			return 2
		}
		if err := syscall.Setgid(s.GID); err != nil {
			fmt.Fprintln(os.Stderr, "child: setgid:", err)
			return 2
		}
		if err := syscall.Setuid(s.UID); err != nil {
			fmt.Fprintln(os.Stderr, "child: setuid:", err)
			return 2
		}
		err := syscall.Exec(s.Argv[0], s.Argv, s.Env)
		fmt.Fprintln(os.Stderr, "child: exec:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "child: unknown mode %q\n", mode)
	return 2
}

const auditUnset = "4294967295"

// newAuditSession gives this process a new audit session id when it has one (a login through
// pam_loginuid, as on a CI runner reached by ssh): the module keys sudo freshness on it, so a
// "new login session" in a test must not share it. Root may rewrite its own loginuid unless the
// kernel made it immutable.
func newAuditSession() error {
	before, err := os.ReadFile("/proc/self/sessionid")
	if err != nil || strings.TrimSpace(string(before)) == auditUnset {
		return nil // no audit session: the session is getsid()
	}
	uid, err := os.ReadFile("/proc/self/loginuid")
	if err != nil {
		return fmt.Errorf("new audit session: %w", err)
	}
	f, err := os.OpenFile("/proc/self/loginuid", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte(strings.TrimSpace(string(uid))))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("new audit session (cannot rewrite loginuid): %w", err)
	}
	after, err := os.ReadFile("/proc/self/sessionid")
	if err != nil || string(after) == string(before) {
		return fmt.Errorf("new audit session: session id stayed %s", before)
	}
	return nil
}

var (
	sessionsOnce sync.Once
	sessionsErr  string
)

// needNewSessions skips when this machine cannot give a child process a login session of its
// own: when the test runs inside an audit session (a login through pam_loginuid) whose loginuid
// the kernel keeps immutable. Without an audit session, setsid alone makes a new session.
func needNewSessions(t *testing.T) {
	t.Helper()
	sessionsOnce.Do(func() {
		cmd := childCmd("tx", txChildSpec{NewAuditSession: true})
		if out, err := cmd.CombinedOutput(); err != nil {
			sessionsErr = fmt.Sprintf("%v: %s", err, out)
		}
	})
	if sessionsErr != "" {
		t.Skipf("cannot start a new login session for a child process: %s", sessionsErr)
	}
}

// childCmd returns a command that runs this test binary in a child mode with a spec.
func childCmd(mode string, spec any) *exec.Cmd {
	b, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(testBin)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, specEnv+"="+string(b))
	return cmd
}

// runTxChild runs transactions in a child process that is the leader of a new session (setsid),
// as sshd's and login's children are, and returns their results.
func runTxChild(t *testing.T, spec txChildSpec) []pamtest.Result {
	t.Helper()
	cmd := childCmd("tx", spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return parseResults(t, string(out))
}

func parseResults(t *testing.T, out string) []pamtest.Result {
	t.Helper()
	res, err := parseChild(out)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// parseChild returns the results a "tx" child printed.
func parseChild(out string) ([]pamtest.Result, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			var res []pamtest.Result
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				return nil, fmt.Errorf("child result: %w", err)
			}
			return res, nil
		}
	}
	return nil, fmt.Errorf("child printed no result: %q", out)
}
