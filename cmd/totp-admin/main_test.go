package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// bin is totp-admin, built once for every test of this file.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "totp-admin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "totp-admin")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build totp-admin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is a config (0644, owned by whoever runs the test, as securefile wants) and a store
// directory (0700) in a temporary directory.
type site struct {
	dir, conf, store string
}

func newSite(t *testing.T) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{dir: dir, conf: filepath.Join(dir, "pam_totp.conf"), store: filepath.Join(dir, "store")}
	if err := os.Mkdir(s.store, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("issuer = \"Example HPC\"\n[store]\ndir = %q\n", s.store)
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *site) opts() store.Options { return store.Options{Dir: s.store, Timeout: time.Second} }

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs totp-admin --config s.conf ARGS with stdin.
func (s *site) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", s.conf}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TERM=xterm-256color", "LANG=C.UTF-8"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (s *site) tokens(t *testing.T, user string) []token.Token {
	t.Helper()
	var toks []token.Token
	err := store.NewTokens(s.opts()).View(func(x *store.TokensTx) error {
		var err error
		toks, err = x.UserTokens(user)
		return err
	})
	if err != nil {
		t.Fatalf("read tokens: %v", err)
	}
	return toks
}

const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

var secretBytes, _ = totp.DecodeSecret(secret)

// code returns the code of secret steps time steps from now.
func code(steps int) string {
	return totp.Code(secretBytes, totp.DefaultParams, uint64(int64(totp.Step(time.Now(), 30))+int64(steps)))
}

// wrongCode returns a code that matches no step within 10 of now.
func wrongCode() string {
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", i*7919%1000000)
		ok := true
		for d := -11; d <= 11; d++ {
			if code(d) == c {
				ok = false
			}
		}
		if ok {
			return c
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	s := newSite(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"version", []string{"--version"}, 0, "totp-admin ", ""},
		{"check config", []string{"--check-config"}, 0, ": OK", ""},
		{"check-config verb", []string{"check-config"}, 0, ": OK", ""},
		{"check-config with an argument", []string{"check-config", "x"}, 2, "", "check-config takes no arguments"},
		{"no command", nil, 2, "", "totp-admin: no command\nusage:"},
		{"unknown command", []string{"frob"}, 2, "", `totp-admin: unknown command "frob"`},
		{"missing user", []string{"token", "add"}, 2, "", "totp-admin: token add: wrong number of arguments"},
		{"bad flag", []string{"token", "list", "--frob"}, 2, "", "flag provided but not defined"},
		{"bad digits", []string{"token", "add", "alice", "--digits", "7"}, 2, "", "--digits 7: want 6 or 8"},
		{"bad qr mode", []string{"token", "add", "alice", "--qr", "huge"}, 2, "", "--qr"},
		{"unknown token", []string{"token", "remove", "alice", "nope"}, 1, "", "totp-admin: token nope of alice: no such token\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.run(t, "", tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.wantOut) || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("totp-admin %v: %s\nwant exit %d, stdout with %q, stderr with %q", tc.args, r, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if tc.name != "version" {
				golden(t, r)
			}
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		// A typo fails --check-config with its place and the nearest key; other verbs warn and go on.
		s := newSite(t)
		f, err := os.OpenFile(s.conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("[rate_limit]\nlockout_afer = 5\n")
		f.Close()
		want := `unknown key "rate_limit.lockout_afer" at ` + s.conf + `:5:1`
		for _, args := range [][]string{{"--check-config"}, {"check-config"}} {
			r := s.run(t, "", args...)
			if r.code != 1 || r.stdout != "" || r.stderr != "totp-admin: "+want+`; did you mean "lockout_after"?`+"\n" {
				t.Errorf("totp-admin %v with a typo: %s\nwant exit 1 and %q", args, r, want)
			}
		}
		r := s.run(t, "", "token", "list")
		if r.code != 0 || r.stderr != "totp-admin: warning: "+want+` ignored; did you mean "lockout_after"?`+"\n" {
			t.Errorf("totp-admin token list with a typo: %s\nwant exit 0 and a warning", r)
		}
	})
	t.Run("unsafe config", func(t *testing.T) {
		s := newSite(t)
		if err := os.Chmod(s.conf, 0o666); err != nil {
			t.Fatal(err)
		}
		r := s.run(t, "", "token", "list")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "totp-admin: open config: config ") || !strings.Contains(r.stderr, "mode 0666") {
			t.Fatalf("world-writable config: %s", r)
		}
	})
}

func TestTokenAdd(t *testing.T) {
	skewed := regexp.MustCompile(`device clock seems about (120|150|180) seconds ahead`)
	behind := regexp.MustCompile(`device clock seems about (120|150|180) seconds behind`)
	tests := []struct {
		name       string
		args       []string
		stdin      func() string
		wantCode   int
		wantActive bool
		wantOut    []string
		wantRe     *regexp.Regexp
	}{
		{"no verify", []string{"--no-verify", "--name", "phone"}, func() string { return "" }, 0, true,
			[]string{"is active (--no-verify", "otpauth://totp/Example%20HPC:alice?secret=" + secret, "run `totp-admin backup-codes alice`"}, nil},
		{"right code", nil, func() string { return code(0) + "\n" }, 0, true,
			[]string{"Code verified: token", "secret (hex):    48656c6c6f21deadbeef", "▀"}, nil},
		{"wrong then right", nil, func() string { return wrongCode() + "\n" + code(0) + "\n" }, 0, true,
			[]string{"That code is not valid", "2 tries left", "Code verified"}, nil},
		{"clock behind then right", nil, func() string { return code(-5) + "\n" + code(0) + "\n" }, 0, true,
			[]string{"Code verified"}, behind},
		// A code shown ahead of its time burns the steps up to its own: the current one is refused.
		{"clock ahead burns the current code", nil, func() string { return code(5) + "\n" + code(0) + "\n" }, 1, false,
			[]string{"That code is not valid", "No code entered (end of input); the pending token"}, skewed},
		{"end of input", nil, func() string { return "" }, 1, false,
			[]string{"No code entered (end of input); the pending token"}, nil},
		{"three wrong codes", nil, func() string { w := wrongCode() + "\n"; return w + w + w }, 1, false,
			[]string{"No valid code entered; the pending token"}, nil},
		{"ascii qr, short uri", []string{"--qr", "ascii"}, func() string { return code(0) + "\n" }, 0, true,
			[]string{"##", "(The QR code holds a shortened otpauth URI", "otpauth://totp/Example%20HPC:alice?secret=" + secret + "&issuer="}, nil},
		{"ascii qr too wide", []string{"--qr", "ascii", "--algorithm", "sha256", "--digits", "8", "--period", "60"}, func() string {
			p := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}
			return totp.Code(secretBytes, p, totp.Step(time.Now(), 60)) + "\n"
		}, 0, true, []string{"(No QR code: qrterm: QR code too wide"}, nil},
		{"no qr", []string{"--no-qr", "--algorithm", "sha256", "--digits", "8", "--period", "60"}, func() string {
			p := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}
			return totp.Code(secretBytes, p, totp.Step(time.Now(), 60)) + "\n"
		}, 0, true, []string{"SHA256, 8 digits, every 60 seconds", "algorithm=SHA256&digits=8&period=60"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			args := append([]string{"token", "add", "alice", "--secret-file", secretFile(t, secret)}, tc.args...)
			r := s.run(t, tc.stdin(), args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.wantCode, r)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q\n%s", w, r)
				}
			}
			if tc.wantRe != nil && !tc.wantRe.MatchString(r.stdout) {
				t.Errorf("stdout does not match %v\n%s", tc.wantRe, r)
			}
			if tc.name == "no qr" && strings.Contains(r.stdout, "▀") {
				t.Errorf("--no-qr drew a QR code")
			}
			if strings.Contains(r.stderr, secret) {
				t.Errorf("stderr holds the secret:\n%s", r.stderr)
			}
			toks := s.tokens(t, "alice")
			if !tc.wantActive {
				if len(toks) != 0 {
					t.Fatalf("tokens = %+v, want the pending token removed", toks)
				}
				if !regexp.MustCompile(`(?m)^totp-admin: token [0-9a-f]{8} of alice not activated: `).MatchString(r.stderr) {
					t.Errorf("stderr = %q", r.stderr)
				}
				return
			}
			if len(toks) != 1 || toks[0].State != token.Active {
				t.Fatalf("tokens = %+v, want one active", toks)
			}
			if tc.args == nil { // verified: the code's step is stored, so it cannot be replayed
				var step uint64
				_ = store.NewState(s.opts()).View(func(x *store.StateTx) error {
					step = x.LastStep("alice", toks[0].ID)
					return nil
				})
				if now := totp.Step(time.Now(), 30); step+2 < now || step > now+1 {
					t.Errorf("last step = %d, want about %d", step, now)
				}
			}
		})
	}
	t.Run("bad secret is not echoed", func(t *testing.T) {
		s := newSite(t)
		bad := "JBSWY3DPEHPK3PX1JBSWY3DP"
		r := s.run(t, "", "token", "add", "alice", "--secret-file", secretFile(t, bad))
		if r.code != 2 || strings.Contains(r.stderr, bad) || !strings.Contains(r.stderr, "--secret-file: the secret is not valid base32") {
			t.Fatalf("bad --secret-file: %s", r)
		}
	})
	// A secret on the command line is visible to every user in ps and stays in shell history.
	t.Run("bare --secret refused", func(t *testing.T) {
		s := newSite(t)
		r := s.run(t, "", "token", "add", "alice", "--secret", secret)
		if r.code != 2 || strings.Contains(r.stderr, secret) || !strings.Contains(r.stderr, "use --secret-file FILE") {
			t.Fatalf("--secret: %s", r)
		}
		if _, err := os.Stat(filepath.Join(s.store, "tokens.db")); err == nil {
			t.Fatalf("a refused --secret wrote the token store")
		}
	})
	t.Run("secret file readable by others refused", func(t *testing.T) {
		s := newSite(t)
		f := secretFile(t, secret)
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.run(t, "", "token", "add", "alice", "--no-verify", "--secret-file", f)
		if r.code != 2 || !strings.Contains(r.stderr, "grants 0044 to others") {
			t.Fatalf("--secret-file mode 0644: %s", r)
		}
	})
	t.Run("secret from standard input, then the first code", func(t *testing.T) {
		s := newSite(t)
		code := totp.Code(secretBytes, totp.DefaultParams, totp.Step(time.Now(), 30))
		r := s.run(t, secret+"\n"+code+"\n", "token", "add", "alice", "--no-qr", "--secret-file", "-")
		if r.code != 0 || !strings.Contains(r.stdout, "Code verified") {
			t.Fatalf("--secret-file -: %s", r)
		}
		if got := s.tokens(t, "alice"); len(got) != 1 || got[0].State != token.Active {
			t.Fatalf("tokens = %+v, want one active", got)
		}
	})
}

// secretFile writes secret into a new 0600 file and returns its path.
func secretFile(t *testing.T, secret string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// An interrupt while the code is asked for removes the pending token.
func TestTokenAddInterrupted(t *testing.T) {
	s := newSite(t)
	cmd := exec.Command(bin, "--config", s.conf, "token", "add", "alice", "--no-qr")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	br := bufio.NewReader(io.TeeReader(stdout, &out))
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for !strings.HasSuffix(out.String(), "Code: ") {
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("no prompt: %v\n%s", err, out.String())
		}
	}
	if got := s.tokens(t, "alice"); len(got) != 1 || got[0].State != token.Pending {
		t.Fatalf("tokens while asking = %+v, want one pending", got)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want 1\n%s%s\n%s", err, out.String(), rest, errb.String())
	}
	if !strings.Contains(string(rest), "Interrupted; the pending token") {
		t.Errorf("output lacks the interrupt notice: %s", rest)
	}
	if got := s.tokens(t, "alice"); len(got) != 0 {
		t.Fatalf("tokens after interrupt = %+v, want none", got)
	}
}

func TestTokenManage(t *testing.T) {
	s := newSite(t)
	if r := s.run(t, "", "token", "add", "alice", "--no-verify", "--secret-file", secretFile(t, secret), "--name", "phone"); r.code != 0 {
		t.Fatal(r)
	}
	if r := s.run(t, "", "token", "add", "bob", "--no-verify", "--no-qr"); r.code != 0 {
		t.Fatal(r)
	}
	// A pending token, as a crashed enrollment or a registry would leave it.
	if err := store.NewTokens(s.opts()).Update(func(x *store.TokensTx) error {
		return x.PutToken(token.Token{User: "bob", ID: "pend0001", Name: "pending name", Algorithm: totp.SHA1,
			Digits: 6, Period: 30, Secret: secretBytes, State: token.Pending, Created: time.Unix(1700000000, 0)})
	}); err != nil {
		t.Fatal(err)
	}
	alice := s.tokens(t, "alice")[0].ID
	steps := []struct {
		args     []string
		wantCode int
		want     []string
	}{
		{[]string{"token", "list"}, 0, []string{"USER", "LAST USED", "alice", "phone", "active", "bob", "token-1", "pending name", "pending", "2023-11-14 22:13Z"}},
		{[]string{"token", "list", "alice", "--json"}, 0, []string{`"user": "alice"`, `"name": "phone"`, `"state": "active"`}},
		{[]string{"token", "list", "nobody"}, 0, []string{"nobody has no tokens."}},
		{[]string{"token", "enable", "bob", "pend0001"}, 1, []string{"pending"}},
		{[]string{"token", "disable", "alice", alice}, 0, []string{"disabled", "alice has no active token left"}},
		{[]string{"token", "list", "alice"}, 0, []string{"disabled"}},
		{[]string{"token", "enable", "alice", alice}, 0, []string{"enabled"}},
		{[]string{"token", "remove", "alice", alice}, 0, []string{"removed"}},
		{[]string{"token", "list", "alice"}, 0, []string{"alice has no tokens."}},
	}
	for i, st := range steps {
		r := s.run(t, "", st.args...)
		if r.code != st.wantCode {
			t.Fatalf("%v: exit %d, want %d\n%s", st.args, r.code, st.wantCode, r)
		}
		t.Run(fmt.Sprintf("%d %s", i+1, strings.Join(st.args[:2], " ")), func(t *testing.T) { golden(t, r) })
		for _, w := range st.want {
			if !strings.Contains(r.stdout+r.stderr, w) {
				t.Errorf("%v: output lacks %q\n%s", st.args, w, r)
			}
		}
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.Contains(out, secret) || strings.Contains(out, "\u009b") {
				t.Errorf("%v: output holds the secret or a control character\n%s", st.args, r)
			}
		}
	}
}

var codeRe = regexp.MustCompile(`(?m)^\s+\d+\. ([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})$`)

func TestBackupCodes(t *testing.T) {
	s := newSite(t)
	var sets [][]string
	for range 2 {
		r := s.run(t, "", "backup-codes", "alice")
		if r.code != 0 || !strings.Contains(r.stdout, "Store them somewhere safe") {
			t.Fatal(r)
		}
		golden(t, r)
		var codes []string
		for _, m := range codeRe.FindAllStringSubmatch(r.stdout, -1) {
			codes = append(codes, m[1])
		}
		if len(codes) != backupcode.Count {
			t.Fatalf("printed %d codes, want %d\n%s", len(codes), backupcode.Count, r)
		}
		sets = append(sets, codes)
	}
	var recs []token.BackupCode
	if err := store.NewTokens(s.opts()).View(func(x *store.TokensTx) error {
		var err error
		recs, err = x.BackupCodes("alice")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	match := func(c string) bool {
		norm, _ := backupcode.Normalize(c)
		for _, r := range recs {
			if backupcode.Match(norm, r) {
				return true
			}
		}
		return false
	}
	for _, c := range sets[1] {
		if !match(c) {
			t.Errorf("printed code %s matches no stored hash", c)
		}
	}
	for _, c := range sets[0] {
		if match(c) {
			t.Errorf("replaced code %s still matches", c)
		}
	}
}

func TestUnlockAndReset(t *testing.T) {
	s := newSite(t)
	if r := s.run(t, "", "token", "add", "alice", "--no-verify", "--no-qr"); r.code != 0 {
		t.Fatal(r)
	}
	if err := store.NewState(s.opts()).Update(func(x *store.StateTx) error {
		return x.SetFailures("alice", store.Failures{Count: 20, Last: time.Now(), Until: time.Now().Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, "", "unlock", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "alice unlocked: 20 failed codes") {
		t.Fatal(r)
	}
	_ = store.NewState(s.opts()).View(func(x *store.StateTx) error {
		if f := x.Failures("alice"); f.Count != 0 {
			t.Errorf("failures after unlock = %+v", f)
		}
		return nil
	})
	if r := s.run(t, "", "unlock", "alice"); !strings.Contains(r.stdout, "nothing to unlock") {
		t.Error(r)
	}
	if r := s.run(t, "", "backup-codes", "alice"); r.code != 0 {
		t.Fatal(r)
	}
	r = s.run(t, "", "reset", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "1 tokens and 10 backup codes removed") {
		t.Fatal(r)
	}
	if toks := s.tokens(t, "alice"); len(toks) != 0 {
		t.Fatalf("tokens after reset: %+v", toks)
	}
}

func TestImportCSV(t *testing.T) {
	good := "# user,secret,name\nalice," + secret + ",phone\r\nbob,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
	bad := good + "carol,JBSWY3DPEHPK3PX1\n\ndave\n"
	t.Run("good file", func(t *testing.T) {
		s := newSite(t)
		f := filepath.Join(s.dir, "tokens.csv")
		_ = os.WriteFile(f, []byte(good), 0o600)
		r := s.run(t, "", "import", "csv", f)
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 2 tokens") {
			t.Fatal(r)
		}
		if toks := s.tokens(t, "alice"); len(toks) != 1 || toks[0].Name != "phone" || toks[0].State != token.Active {
			t.Fatalf("alice: %+v", toks)
		}
		r = s.run(t, good, "import", "csv", "-")
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 0 tokens") || !strings.Contains(r.stdout, "2 already present") {
			t.Fatal(r)
		}
		if r := s.run(t, "", "token", "list"); strings.Contains(r.stdout, secret) {
			t.Fatalf("token list shows a secret\n%s", r)
		}
	})
	t.Run("bad lines", func(t *testing.T) {
		s := newSite(t)
		r := s.run(t, bad, "import", "csv", "-")
		if r.code != 1 {
			t.Fatal(r)
		}
		want := "totp-admin: -: line 4: secret is not valid base32\ntotp-admin: -: line 6: want user,secret[,name]\n" +
			"totp-admin: 2 invalid lines; nothing was imported\n"
		if r.stderr != want {
			t.Fatalf("stderr = %q, want %q", r.stderr, want)
		}
		golden(t, r)
		if strings.Contains(r.stderr, "JBSWY3DP") {
			t.Fatal("an error holds a secret")
		}
		if _, err := os.Stat(filepath.Join(s.store, store.TokensFile)); !os.IsNotExist(err) {
			t.Fatalf("tokens.db written: %v", err)
		}
		r = s.run(t, bad, "import", "csv", "-", "--skip-invalid")
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 2 tokens") || !strings.Contains(r.stdout, "2 invalid lines skipped") {
			t.Fatal(r)
		}
	})
	t.Run("unknown users warned", func(t *testing.T) {
		s := newSite(t)
		in := bad + "root," + secret + "\nno-such-user-pamtotp," + secret + ",other\n"
		r := s.run(t, in, "import", "csv", "-", "--skip-invalid")
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 4 tokens") || !strings.Contains(r.stdout, "users not known to this host") {
			t.Fatal(r)
		}
		for _, w := range []string{"totp-admin: warning: user no-such-user-pamtotp is not known to this host\n",
			"users are not known to this host; their tokens were imported all the same\n"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr = %q, want %q", r.stderr, w)
			}
		}
		if strings.Contains(r.stderr, "user root ") {
			t.Errorf("stderr = %q: root is known", r.stderr)
		}
	})
	t.Run("10000 lines", func(t *testing.T) {
		s := newSite(t)
		var b bytes.Buffer
		rnd := rand.NewChaCha8([32]byte{7})
		secrets := map[string]string{}
		for i := range 10000 {
			sec := make([]byte, 20)
			_, _ = rnd.Read(sec)
			u := fmt.Sprintf("u%05d", (i*7919)%10000)
			secrets[u] = totp.EncodeSecret(sec)
			fmt.Fprintf(&b, "%s,%s\n", u, secrets[u])
		}
		f := filepath.Join(s.dir, "big.csv")
		_ = os.WriteFile(f, b.Bytes(), 0o600)
		start := time.Now()
		r := s.run(t, "", "import", "csv", f)
		elapsed := time.Since(start)
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 10000 tokens") {
			t.Fatal(r)
		}
		t.Logf("totp-admin import csv: 10000 lines in %v (whole process): %.0f lines/s; %s", elapsed,
			10000/elapsed.Seconds(), strings.TrimSpace(r.stdout))
		n := 0
		_ = store.NewTokens(s.opts()).View(func(x *store.TokensTx) error {
			return x.ForEachToken(func(tok token.Token) error {
				n++
				if totp.EncodeSecret(tok.Secret) != secrets[tok.User] {
					t.Errorf("user %s: wrong secret", tok.User)
				}
				return nil
			})
		})
		if n != 10000 {
			t.Fatalf("%d tokens stored, want 10000", n)
		}
	})
	t.Run("planted input files", func(t *testing.T) {
		s := newSite(t)
		real := filepath.Join(s.dir, "real.csv")
		_ = os.WriteFile(real, []byte(good), 0o600)
		link := filepath.Join(s.dir, "link.csv")
		_ = os.Symlink(real, link)
		fifo := filepath.Join(s.dir, "fifo.csv")
		_ = syscall.Mkfifo(fifo, 0o600)
		for _, f := range []string{link, fifo, s.dir} {
			r := s.run(t, "", "import", "csv", f)
			if r.code != 1 || !(strings.Contains(r.stderr, "symlink") || strings.Contains(r.stderr, "not a regular file")) {
				t.Errorf("import %s: %s", f, r)
			}
		}
		if _, err := os.Stat(filepath.Join(s.store, store.TokensFile)); !os.IsNotExist(err) {
			t.Fatalf("tokens.db written: %v", err)
		}
	})
}

const gaFile = `JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
" RATE_LIMIT 3 30 1700000000
" WINDOW_SIZE 17
" DISALLOW_REUSE
" TOTP_AUTH
11223344
55667788
99001122
33445566
77889900
`

func TestImportGA(t *testing.T) {
	s := newSite(t)
	f := filepath.Join(s.dir, ".google_authenticator")
	_ = os.WriteFile(f, []byte(gaFile), 0o400)
	r := s.run(t, "", "import", "google-authenticator", "alice", f)
	if r.code != 0 || !strings.Contains(r.stdout, "Imported 5 scratch codes as backup codes") ||
		!strings.Contains(r.stdout, "Ignored options (pam_totp.conf decides these for everyone): DISALLOW_REUSE, RATE_LIMIT, WINDOW_SIZE") {
		t.Fatal(r)
	}
	golden(t, r)
	toks := s.tokens(t, "alice")
	if len(toks) != 1 || toks[0].Name != "google-authenticator" || toks[0].State != token.Active ||
		totp.EncodeSecret(toks[0].Secret) != secret {
		t.Fatalf("tokens: %+v", toks)
	}
	if r := s.run(t, "", "import", "google-authenticator", "alice", f); r.code != 0 || !strings.Contains(r.stdout, "already has this token") {
		t.Fatal(r)
	}
	hotp := filepath.Join(s.dir, "hotp")
	_ = os.WriteFile(hotp, []byte("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n12345678\n"), 0o600)
	r = s.run(t, "", "import", "google-authenticator", "bob", hotp)
	if r.code != 1 || !strings.Contains(r.stderr, "HOTP_COUNTER: counter-based (HOTP) tokens are not supported") ||
		strings.Contains(r.stderr, "JBSWY3DP") {
		t.Fatal(r)
	}
	link := filepath.Join(s.dir, "link")
	_ = os.Symlink(f, link)
	if r := s.run(t, "", "import", "google-authenticator", "bob", link); r.code != 1 || !strings.Contains(r.stderr, "symlink") {
		t.Fatal(r)
	}
	if toks := s.tokens(t, "bob"); len(toks) != 0 {
		t.Fatalf("bob: %+v", toks)
	}
}

// Symlinks and FIFOs planted at the databases are refused and nothing is written through them.
func TestPlantedDatabases(t *testing.T) {
	tests := []struct {
		name, file string
		fifo       bool
		args       []string
	}{
		{"symlink tokens.db", store.TokensFile, false, []string{"token", "add", "alice", "--no-verify", "--no-qr"}},
		{"symlink state.db", store.StateFile, false, []string{"unlock", "alice"}},
		{"fifo tokens.db", store.TokensFile, true, []string{"token", "list"}},
		{"fifo state.db", store.StateFile, true, []string{"backup-codes", "alice"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			target := filepath.Join(s.dir, "target")
			_ = os.WriteFile(target, []byte("precious"), 0o600)
			path := filepath.Join(s.store, tc.file)
			if tc.fifo {
				if err := syscall.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			r := s.run(t, "", tc.args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "totp-admin: ") {
				t.Fatalf("exit %d, want 1\n%s", r.code, r)
			}
			if !strings.Contains(r.stderr, "symlink") && !strings.Contains(r.stderr, "fifo") {
				t.Errorf("stderr does not say why: %s", r.stderr)
			}
			if b, _ := os.ReadFile(target); string(b) != "precious" {
				t.Fatalf("target changed: %q", b)
			}
		})
	}
}

func TestDoctorStack(t *testing.T) {
	s := newSite(t)
	pamdir := filepath.Join(s.dir, "pam.d")
	_ = os.Mkdir(pamdir, 0o755)
	mod := filepath.Join(s.dir, "pam_totp.so")
	_ = os.WriteFile(mod, nil, 0o644)
	helperDir := filepath.Join(s.dir, "libexec")
	_ = os.Mkdir(helperDir, 0o755)
	helper := filepath.Join(helperDir, "pam-totp-helper")
	_ = os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755)
	_ = os.WriteFile(filepath.Join(pamdir, "sshd"), []byte("auth sufficient pam_rootok.so\nauth required "+mod+"\n"), 0o644)
	_ = os.WriteFile(filepath.Join(pamdir, "sudo"), []byte("auth required pam_unix.so\n"), 0o644)
	if r := s.run(t, "", "token", "add", "alice", "--no-verify", "--no-qr"); r.code != 0 {
		t.Fatal(r)
	}
	r := s.run(t, "", "doctor", "--pamdir", pamdir, "--helper", helper, "--no-transaction")
	if r.code != 0 || !strings.Contains(r.stdout, "WARN  "+pamdir+"/sshd:1: \"auth sufficient pam_rootok.so\"") {
		t.Fatal(r)
	}
	r = s.run(t, "", "doctor", "--pamdir", pamdir, "--helper", helper, "--no-transaction", "--service", "sudo")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  pam_totp.so is not on the auth stack of sudo") {
		t.Fatal(r)
	}
	r = s.run(t, "", "doctor", "--pamdir", pamdir, "--helper", filepath.Join(s.dir, "nope"), "--no-transaction")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  helper: open "+filepath.Join(s.dir, "nope")) {
		t.Fatal(r)
	}
}

// TestDoctorTransaction runs a real PAM transaction (pam_start_confdir) through the built module
// and helper.
func TestDoctorTransaction(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pam_totp.so insists on a root-owned helper")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Linux-PAM only")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", root, "build").CombinedOutput(); err != nil {
		t.Skipf("make build failed, cannot test with the real module: %v\n%s", err, out)
	}
	mod, helper := filepath.Join(root, "build", "pam_totp.so"), filepath.Join(root, "build", "pam-totp-helper")
	s := newSite(t)
	pamdir := filepath.Join(s.dir, "pam.d")
	_ = os.Mkdir(pamdir, 0o755)
	line := fmt.Sprintf("auth required %s helper=%s config=%s\n", mod, helper, s.conf)
	_ = os.WriteFile(filepath.Join(pamdir, "pam-totp-doctor-test"), []byte(line), 0o644)
	// A stack that stops before pam_totp without a password: pam_deny first.
	_ = os.WriteFile(filepath.Join(pamdir, "stops-early"), []byte("auth requisite pam_deny.so\n"+line), 0o644)
	if r := s.run(t, "", "token", "add", "root", "--no-verify", "--no-qr"); r.code != 0 {
		t.Fatal(r)
	}
	failures := func() int {
		var n int
		_ = store.NewState(s.opts()).View(func(x *store.StateTx) error { n = x.Failures("root").Count; return nil })
		return n
	}
	tests := []struct {
		name, service, user string
		wantCode            int
		want                string
	}{
		{"asked", "pam-totp-doctor-test", "", 0, "OK    pam_totp asked for a code: a PAM transaction of pam-totp-doctor-test for root reached the prompt \"Verification code: \""},
		{"no token", "pam-totp-doctor-test", "nobody", 1, "FAIL  pam_totp on its own did not ask nobody for a code (Authentication failure); the modules said: No two-factor token is enrolled for your account."},
		{"stack stops early", "stops-early", "", 0, "OK    pam_totp asked for a code when run on its own"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"doctor", "--pamdir", pamdir, "--service", tc.service}
			if tc.user != "" {
				args = append(args, "--user", tc.user)
			}
			r := s.run(t, "", args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("want exit %d and %q\n%s", tc.wantCode, tc.want, r)
			}
			if n := failures(); n != 0 {
				t.Fatalf("doctor counted %d failures for root", n)
			}
		})
	}
}

func TestRegistryNodeRefusesLocalWrites(t *testing.T) {
	s := newSite(t)
	conf, err := os.ReadFile(s.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = append(conf, []byte("\n[sync]\nregistry = \"https://registry.example:8443\"\n")...)
	if err := os.WriteFile(s.conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"token", "add", "alice", "--no-verify", "--no-qr"},
		{"backup-codes", "alice"},
		{"reset", "alice"},
	} {
		r := s.run(t, "", args...)
		if r.code != 1 || !strings.Contains(r.stderr, "follows the registry") {
			t.Errorf("%v on a registry node: exit %d, stderr %q; want 1 and a pointer to the registry", args, r.code, r.stderr)
		}
	}
	if r := s.run(t, "", "token", "list"); r.code != 0 {
		t.Errorf("token list on a registry node: exit %d, want 0 (reading is fine)", r.code)
	}
}

// TestDoctorSync: doctor says whether the system bus and totp-syncd answer, and what to start
// when not: a warning on a standalone node, a failure on a node that follows a registry.
func TestDoctorSync(t *testing.T) {
	b := busapitest.StartBus(t) // a bus on which nobody owns io.github.pamtotp.Sync1 yet
	s := newSite(t)
	regConf := filepath.Join(s.dir, "registry-node.conf")
	conf, err := os.ReadFile(s.conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regConf, append(conf, "[sync]\nregistry = \"https://registry.invalid:8443\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	doctor := func(conf, bus string) string {
		t.Helper()
		r := s.run(t, "", "doctor", "--config", conf, "--no-transaction", "--pamdir", s.dir, "--bus", bus)
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, "totp-syncd") && !strings.Contains(l, "resident verifier") {
				return l
			}
		}
		t.Fatalf("doctor said nothing of totp-syncd\n%s", r)
		return ""
	}
	start := "start the system bus and the daemon: systemctl enable --now dbus totp-syncd"
	tests := []struct {
		name, conf, bus string
		want            []string
	}{
		{"no bus", s.conf, "unix:path=" + filepath.Join(s.dir, "no-bus"),
			[]string{"WARN  the system bus is not running on this node", "users cannot enroll", start}},
		{"bus without totp-syncd", s.conf, b.Addr,
			[]string{"WARN  totp-syncd is not running on this node (no io.github.pamtotp.Sync1 on the system bus)", start}},
		{"registry node without totp-syncd", regConf, b.Addr,
			[]string{"FAIL  totp-syncd is not running", "gets no new or revoked tokens", start}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := doctor(tc.conf, tc.bus)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("doctor line %q lacks %q", got, w)
				}
			}
		})
	}
	t.Run("totp-syncd running", func(t *testing.T) {
		busapitest.StartNode(t, b, busapitest.StartRegistry(t))
		if got := doctor(s.conf, b.Addr); !strings.HasPrefix(got, "OK    totp-syncd answers on the system bus") {
			t.Errorf("doctor line %q, want OK", got)
		}
	})
}

// TestCheckRemoval: check-removal exits 0 with one line when only pam-auth-update's block names
// pam_totp.so, 1 with the lines by hand otherwise; --json says the same.
func TestCheckRemoval(t *testing.T) {
	t.Parallel()
	fixtures := filepath.Join("..", "..", "pkg", "doctor", "testdata", "removal")
	profile := filepath.Join(fixtures, "pam-configs", "pam-totp")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"managed", []string{"--pam-dir", filepath.Join(fixtures, "managed")}, 0, "OK: no file in "},
		{"strict", []string{"--pam-dir", filepath.Join(fixtures, "managed"), "--strict"}, 1, "managed/common-auth:10: auth required pam_totp.so\n"},
		{"by hand", []string{"--pam-dir", filepath.Join(fixtures, "byhand")}, 1, "byhand/sshd:2: auth required /lib/x86_64-linux-gnu/security/pam_totp.so\n"},
		{"json", []string{"--pam-dir", filepath.Join(fixtures, "byhand"), "--json"}, 1, `"safe": false`},
		{"json managed", []string{"--pam-dir", filepath.Join(fixtures, "managed"), "--json"}, 0, `"managed": true`},
		{"argument", []string{"sshd"}, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, nil, "", append([]string{"check-removal", "--profile", profile}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.want) {
				t.Errorf("check-removal %v: want exit %d and %q\n%s", tc.args, tc.code, tc.want, r)
			}
			if strings.HasPrefix(tc.name, "json") {
				var v struct {
					Safe  bool `json:"safe"`
					Lines []struct {
						File string `json:"file"`
						Line int    `json:"line"`
					} `json:"lines"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Safe != (tc.code == 0) || len(v.Lines) == 0 {
					t.Errorf("check-removal %v: JSON %q (%v)", tc.args, r.stdout, err)
				}
			}
		})
	}
}

// TestStandaloneTwice runs every verb of the node's store that changes state twice in a row, as
// configuration management does: the second run exits 0 and says "unchanged", and its --json
// answer says "changed": false (and the first's true).
func TestStandaloneTwice(t *testing.T) {
	s := newSite(t)
	if r := s.run(t, "", "token", "add", "alice", "--no-verify", "--secret-file", secretFile(t, secret), "--name", "phone"); r.code != 0 {
		t.Fatal(r)
	}
	id := s.tokens(t, "alice")[0].ID
	jsonOf := func(r result) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, r)
		}
		return m
	}
	steps := []struct {
		args        []string
		first, then string
	}{
		{[]string{"token", "disable", "alice", id}, "(\"phone\") of alice disabled.", "Token " + id + " (\"phone\") of alice unchanged: already disabled.\n"},
		{[]string{"token", "enable", "alice", id}, "(\"phone\") of alice enabled.", "Token " + id + " (\"phone\") of alice unchanged: already enabled.\n"},
		{[]string{"unlock", "alice"}, "alice unchanged: no failed codes, nothing to unlock.", "alice unchanged: no failed codes, nothing to unlock.\n"},
		{[]string{"token", "remove", "alice", id, "--if-exists"}, "(\"phone\") of alice removed.", "Token " + id + " of alice unchanged: absent.\n"},
	}
	for _, st := range steps {
		if r := s.run(t, "", st.args...); r.code != 0 || !strings.Contains(r.stdout, st.first) {
			t.Errorf("totp-admin %v: %s\nwant exit 0 and %q", st.args, r, st.first)
		}
		if r := s.run(t, "", st.args...); r.code != 0 || r.stdout != st.then {
			t.Errorf("totp-admin %v again: %s\nwant exit 0 and %q", st.args, r, st.then)
		}
		r := s.run(t, "", append(st.args, "--json")...)
		if m := jsonOf(r); r.code != 0 || m["changed"] != false {
			t.Errorf("totp-admin %v --json again: %s\nwant \"changed\": false", st.args, r)
		}
	}
	// Without --if-exists the removal of a token that is not there fails, as before.
	if r := s.run(t, "", "token", "remove", "alice", id); r.code != 1 || !strings.Contains(r.stderr, "no such token") {
		t.Errorf("token remove of an absent token: %s, want exit 1", r)
	}

	if r := s.run(t, "", "token", "add", "bob", "--no-verify", "--no-qr"); r.code != 0 {
		t.Fatal(r)
	}
	bob := s.tokens(t, "bob")[0].ID
	r := s.run(t, "", "token", "disable", "bob", bob, "--json")
	if m := jsonOf(r); m["changed"] != true || m["id"] != bob || m["user"] != "bob" || m["state"] != "disabled" {
		t.Errorf("token disable --json = %v, want changed, bob's token, disabled", m)
	}
}

// TestLocalReadsJSON: the reads of a node without a registry answer JSON with --json, and
// check-config's answer says what is wrong with the exit status 1.
func TestLocalReadsJSON(t *testing.T) {
	s := newSite(t)
	for _, args := range [][]string{
		{"token", "list", "--json"},
		{"check-config", "--json"},
		{"doctor", "--json", "--no-transaction", "--pamdir", s.dir, "--bus", "unix:path=" + filepath.Join(s.dir, "no-bus")},
	} {
		r := s.run(t, "", args...)
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Errorf("totp-admin %v: not JSON: %v\n%s", args, err, r)
		}
	}
	r := s.run(t, "", "check-config", "--json")
	if r.code != 0 || r.stdout != "{\n  \"file\": \""+s.conf+"\",\n  \"ok\": true,\n  \"errors\": []\n}\n" {
		t.Errorf("check-config --json of a good file: %s", r)
	}
	os.WriteFile(s.conf, []byte("windoww = 2\n"), 0o644)
	r = s.run(t, "", "check-config", "--json")
	var c struct {
		File   string
		OK     bool
		Errors []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || r.code != 1 || c.OK ||
		len(c.Errors) != 1 || c.Errors[0] != `unknown key "windoww" at `+s.conf+`:1:1; did you mean "window"?` {
		t.Errorf("check-config --json of a file with a typo: %s\nwant exit 1 and the key in errors", r)
	}
	r = s.run(t, "", "doctor", "--json", "--no-transaction", "--pamdir", s.dir, "--bus", "unix:path="+filepath.Join(s.dir, "no-bus"))
	var d struct {
		OK       bool `json:"ok"`
		Findings []struct{ Status, Message string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 1 || d.OK || len(d.Findings) == 0 {
		t.Errorf("doctor --json without a PAM stack: %s\nwant exit 1, ok false and findings", r)
	}
	for _, f := range d.Findings {
		if f.Status != "ok" && f.Status != "warn" && f.Status != "fail" {
			t.Errorf("doctor --json finding status %q, want ok, warn or fail", f.Status)
		}
	}
}
