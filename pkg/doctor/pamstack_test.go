package doctor

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const fixtures = "testdata/pam.d"

var fixtureModules = []string{"testdata/modules"}

func TestCheckStack(t *testing.T) {
	tests := []struct {
		service  string
		wantFail bool
		// wantWarn are substrings of the expected warnings, in order; no other warning may appear.
		wantWarn []string
	}{
		{"sshd-good", false, nil},
		{"sshd-short-jump", false, nil},
		{"sshd-substack-safe", false, nil},
		{"sshd-sufficient", false, []string{`"auth sufficient pam_rootok.so": when pam_rootok.so succeeds the stack ends there`}},
		{"sshd-done", false, []string{`pam_sss.so succeeds the stack ends there`}},
		{"sshd-jump", false, []string{`pam_succeed_if.so succeeds PAM jumps over pam_totp.so`}},
		{"sshd-chain", false, []string{`testdata/pam.d/totp-auth:1: the line starts with '-'`}},
		{"sshd-substack", false, []string{`testdata/pam.d/mfa:1: "auth sufficient pam_succeed_if.so"`}},
		{"sshd-missing", true, nil},
		{"sshd-optional", false, []string{`control optional: a wrong code does not deny`}},
		{"sshd-weak", false, []string{`a authinfo_unavail result of pam_totp.so is ignored`}},
		{"sshd-totp-done", false, []string{`a verified code ends the stack, so pam_unix.so and the lines after it never run`}},
		{"sshd-broken", false, []string{
			`sshd-broken:1: included file testdata/pam.d/nonexistent-file does not exist`,
			`sshd-broken:4: control "bogus"`,
			`sshd-broken:5: unknown type "frob"`,
			`sshd-broken:6: sshd-broken includes itself`,
		}},
		{"sshd-abs", true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			t.Parallel()
			s, err := ReadStack(fixtures, tc.service)
			if err != nil {
				t.Fatal(err)
			}
			r := &Report{Stack: s, Findings: CheckStack(s, fixtureModules)}
			if r.Failed() != tc.wantFail {
				t.Errorf("Failed() = %v, want %v: %+v", r.Failed(), tc.wantFail, r.Findings)
			}
			var warns []string
			for _, f := range r.Findings {
				if f.Status == Warn {
					warns = append(warns, f.Msg)
				}
			}
			if len(warns) != len(tc.wantWarn) {
				t.Fatalf("warnings = %q, want %d matching %q", warns, len(tc.wantWarn), tc.wantWarn)
			}
			for i, w := range tc.wantWarn {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warns[i], w)
				}
			}
			var out bytes.Buffer
			if err := r.Write(&out); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "golden", tc.service+".txt"), out.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestReadStackLines(t *testing.T) {
	s, err := ReadStack(fixtures, "sshd-broken")
	if err != nil {
		t.Fatal(err)
	}
	var totpLine *PAMLine
	for _, l := range s.Lines {
		if l.IsTOTP() {
			totpLine = l
		}
	}
	if totpLine == nil {
		t.Fatal("no pam_totp line")
	}
	if want := []string{"config=/etc/pam-totp/pam_totp.conf", "prompt=Your code: "}; !slices.Equal(totpLine.Args, want) {
		t.Errorf("args = %q, want %q (continuation line and [bracketed] argument)", totpLine.Args, want)
	}
	if totpLine.Num != 2 {
		t.Errorf("line number = %d, want 2", totpLine.Num)
	}
	if v, ok := totpLine.Arg("config"); !ok || v != "/etc/pam-totp/pam_totp.conf" {
		t.Errorf("Arg(config) = %q, %v", v, ok)
	}
	for _, bad := range []string{"", "../etc/passwd", "a/b", ".."} {
		if _, err := ReadStack(fixtures, bad); err == nil {
			t.Errorf("ReadStack(%q) succeeded", bad)
		}
	}
	if _, err := ReadStack(fixtures, "no-such-service"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadStack(no-such-service) = %v, want not exist", err)
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		control, value, want string
	}{
		{"required", "success", "ok"},
		{"required", "auth_err", "bad"},
		{"requisite", "auth_err", "die"},
		{"sufficient", "success", "done"},
		{"sufficient", "auth_err", "ignore"},
		{"optional", "auth_err", "ignore"},
		{"[success=2 default=ignore]", "success", "2"},
		{"[success=ok default=die]", "maxtries", "die"},
		{"[success=ok]", "auth_err", "bad"},
		{"[Success=Done]", "success", "done"},
		{"[success=banana]", "success", "bad"},
	}
	for _, tc := range tests {
		l := &PAMLine{Control: tc.control}
		if got := l.action(tc.value); got != tc.want {
			t.Errorf("action(%s, %s) = %q, want %q", tc.control, tc.value, got, tc.want)
		}
	}
}

func FuzzTokens(f *testing.F) {
	f.Add("auth [success=1 default=ignore] pam_unix.so [arg with \\] bracket] x")
	f.Add("auth required pam_totp.so [")
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range tokens(s) {
			if tok == "" && !strings.Contains(s, "[") {
				t.Fatalf("empty token from %q", s)
			}
		}
		_, _ = parseActions(s)
		_ = logicalLines(s)
	})
}

// fakeTx plays a PAM stack for Doctor: it sends the given messages in order and records what the
// conversation answered.
type fakeTx struct {
	calls    []TxRequest
	messages func(req TxRequest) []fakeMsg
	result   func(req TxRequest, answered []error) error
	answers  []string
}

type fakeMsg struct {
	style Style
	text  string
}

func (f *fakeTx) transact(req TxRequest, conv func(Style, string) (string, error)) error {
	f.calls = append(f.calls, req)
	var errs []error
	for _, m := range f.messages(req) {
		ans, err := conv(m.style, m.text)
		f.answers = append(f.answers, ans)
		errs = append(errs, err)
	}
	return f.result(req, errs)
}

// errAuth is libpam's own text for PAM_AUTH_ERR, capitalised as pam_strerror gives it.
var errAuth = errors.New("Authentication failure") //nolint:staticcheck // ST1005: quoted from libpam

func TestDoctor(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pam_totp.conf")
	if err := os.WriteFile(cfgPath, []byte("[store]\ndir = \""+storeDir+"\"\n[policy.sshd-good]\nprompt = \"TOTP: \"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	helperDir := filepath.Join(dir, "libexec")
	if err := os.Mkdir(helperDir, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(helperDir, "pam-totp-helper")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := admin.New(cfg)
	if _, err := a.AddToken("zed", admin.AddOptions{Active: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddToken("bob", admin.AddOptions{}); err != nil { // pending: not a default user
		t.Fatal(err)
	}

	prompted := func(req TxRequest) []fakeMsg {
		if req.ConfDir != "" && req.ConfDir != fixtures {
			return []fakeMsg{{PromptEchoOff, "TOTP: "}}
		}
		return []fakeMsg{{PromptEchoOff, "Password: "}, {PromptEchoOff, "TOTP: "}}
	}
	tests := []struct {
		name       string
		messages   func(TxRequest) []fakeMsg
		result     func(TxRequest, []error) error
		wantFail   bool
		wantCalls  int
		wantInLast string
	}{
		{"asked", prompted, func(TxRequest, []error) error { return errAuth }, false, 1, "OK    pam_totp asked for a code"},
		{"stack stops before pam_totp, module works alone",
			func(req TxRequest) []fakeMsg {
				if req.ConfDir == fixtures {
					return []fakeMsg{{PromptEchoOff, "Password: "}}
				}
				return prompted(req)
			}, func(TxRequest, []error) error { return errAuth }, false, 2, "OK    pam_totp asked for a code when run on its own"},
		{"let in without a code",
			func(TxRequest) []fakeMsg { return []fakeMsg{{TextInfo, "Welcome"}} },
			func(TxRequest, []error) error { return nil }, true, 1, "succeeded without asking for a code; the modules said: Welcome"},
		{"module fails alone",
			func(TxRequest) []fakeMsg {
				return []fakeMsg{{ErrorMsg, "Two-factor authentication is misconfigured on this host."}}
			},
			func(TxRequest, []error) error { return errAuth }, true, 2, "FAIL  pam_totp on its own did not ask zed for a code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := &fakeTx{messages: tc.messages, result: tc.result}
			r := Doctor(DoctorOptions{
				PAMDir: fixtures, Service: "sshd-good", ConfigPath: cfgPath, Helper: helper,
				ModuleDirs: fixtureModules, Transact: tx.transact,
			})
			var out bytes.Buffer
			_ = r.Write(&out)
			if r.Failed() != tc.wantFail {
				t.Errorf("Failed() = %v, want %v\n%s", r.Failed(), tc.wantFail, out.String())
			}
			if len(tx.calls) != tc.wantCalls {
				t.Fatalf("%d transactions, want %d", len(tx.calls), tc.wantCalls)
			}
			if u := tx.calls[0].User; u != "zed" {
				t.Errorf("transaction user = %q, want zed (the first user with an active token)", u)
			}
			if tx.calls[0].ConfDir != fixtures {
				t.Errorf("confdir = %q, want %q", tx.calls[0].ConfDir, fixtures)
			}
			last := r.Findings[len(r.Findings)-1]
			if line := string(last.Status) + strings.Repeat(" ", 6-len(last.Status)) + last.Msg; !strings.Contains(line, tc.wantInLast) {
				t.Errorf("last finding = %q, want %q\n%s", line, tc.wantInLast, out.String())
			}
			for _, ans := range tx.answers {
				if ans != "" {
					t.Errorf("doctor answered a prompt with %q", ans)
				}
			}
			for _, want := range []string{"OK    config", "OK    helper", "OK    store directory", "OK    tokens.db", "OK    state.db"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q\n%s", want, out.String())
				}
			}
		})
	}

	t.Run("prompts are refused, not answered", func(t *testing.T) {
		tx := &fakeTx{messages: prompted, result: func(_ TxRequest, errs []error) error {
			for _, err := range errs {
				if !errors.Is(err, errNoAnswer) {
					t.Errorf("conversation returned %v for a prompt, want errNoAnswer", err)
				}
			}
			return errAuth
		}}
		Doctor(DoctorOptions{PAMDir: fixtures, Service: "sshd-good", ConfigPath: cfgPath, Helper: helper,
			ModuleDirs: fixtureModules, Transact: tx.transact, User: "alice"})
		if tx.calls[0].User != "alice" {
			t.Errorf("user = %q, want alice (--user)", tx.calls[0].User)
		}
	})

	t.Run("unsafe files", func(t *testing.T) {
		if err := os.Chmod(cfgPath, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(cfgPath, 0o644)
		if err := os.Chmod(helper, 0o777); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(helper, 0o755)
		r := Doctor(DoctorOptions{PAMDir: fixtures, Service: "sshd-good", ConfigPath: cfgPath, Helper: helper,
			ModuleDirs: fixtureModules})
		var out bytes.Buffer
		_ = r.Write(&out)
		for _, want := range []string{"FAIL  config: config " + cfgPath + ": mode 0666", "FAIL  helper: helper " + helper + ": mode 0777"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q\n%s", want, out.String())
			}
		}
	})

	t.Run("planted state.db", func(t *testing.T) {
		state := filepath.Join(storeDir, store.StateFile)
		_ = os.Remove(state)
		if err := os.Symlink("/etc/passwd", state); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(state)
		r := Doctor(DoctorOptions{PAMDir: fixtures, Service: "sshd-good", ConfigPath: cfgPath, Helper: helper,
			ModuleDirs: fixtureModules})
		var out bytes.Buffer
		_ = r.Write(&out)
		if !r.Failed() || !strings.Contains(out.String(), "FAIL  state.db: state.db "+state+": is a symlink") {
			t.Errorf("planted state.db not reported\n%s", out.String())
		}
	})
}
