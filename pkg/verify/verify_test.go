package verify

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// The RFC 6238 seed and an instant of Appendix B.
var (
	seed   = []byte("12345678901234567890")
	t0     = time.Unix(1111111109, 0)
	step0  = totp.Step(t0, 30)
	errEOF = errors.New("client went away")
)

// conv is a scripted conversation: it answers prompts in order and records everything.
type conv struct {
	answers []string
	prompts []string
	infos   []string
	errs    []string
	authtok *string
}

func (c *conv) Prompt(text string, echo bool) (string, error) {
	c.prompts = append(c.prompts, text)
	if len(c.answers) == 0 {
		return "", errEOF
	}
	a := c.answers[0]
	c.answers = c.answers[1:]
	return a, nil
}
func (c *conv) Info(s string) error  { c.infos = append(c.infos, s); return nil }
func (c *conv) Error(s string) error { c.errs = append(c.errs, s); return nil }
func (c *conv) SetAuthtok(pw string) error {
	c.authtok = &pw
	return nil
}
func (c *conv) said() string { return strings.Join(append(c.infos, c.errs...), "\n") }

// fixture is a store in a temp dir and a verifier with a settable clock and captured log.
type fixture struct {
	t   *testing.T
	cfg *config.Config
	v   *Verifier
	now time.Time
	log *bytes.Buffer
}

func newFixture(t *testing.T, conf string) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Parse([]byte(conf))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	c.Store.Dir = dir
	f := &fixture{t: t, cfg: c, now: t0, log: &bytes.Buffer{}}
	f.v = &Verifier{Config: c, Log: slog.New(slog.NewTextHandler(f.log, nil)), Now: func() time.Time { return f.now },
		ProcRoot: "/proc"}
	return f
}

func (f *fixture) opts() store.Options {
	return store.Options{Dir: f.cfg.Store.Dir, Timeout: time.Second}
}

func (f *fixture) addToken(user, id string, state token.State, p totp.Params, secret []byte) {
	f.t.Helper()
	err := store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error {
		return x.PutToken(token.Token{User: user, ID: id, Name: id, Algorithm: p.Algorithm, Digits: p.Digits,
			Period: p.Period, Secret: secret, State: state, Created: t0})
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) addBackup(user string, codes ...string) {
	f.t.Helper()
	var recs []token.BackupCode
	for _, c := range codes {
		r, err := backupcode.Record(rand.Reader, user, c, t0)
		if err != nil {
			f.t.Fatal(err)
		}
		recs = append(recs, r)
	}
	err := store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error { return x.ReplaceBackupCodes(user, recs) })
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) auth(req *protocol.Request, answers ...string) (protocol.Verdict, *conv) {
	c := &conv{answers: answers}
	return f.v.Authenticate(req, c), c
}

func (f *fixture) failures(user string) store.Failures {
	var fl store.Failures
	if err := store.NewState(f.opts()).View(func(x *store.StateTx) error { fl = x.Failures(user); return nil }); err != nil {
		f.t.Fatal(err)
	}
	return fl
}

func req(user string) *protocol.Request {
	return &protocol.Request{Version: "1", User: user, UserKnown: true, Service: "sshd", RHost: "192.0.2.1"}
}

func code(step uint64) string { return totp.Code(seed, totp.DefaultParams, step) }

func TestAuthenticateCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		answers     func() []string // one authentication per answer, in order
		want        []protocol.Verdict
		wantOutcome string // outcome logged by the last authentication
		wantSaid    string // text shown to the user at the last authentication
		wantFails   int
	}{
		{"current code", func() []string { return []string{code(step0)} }, []protocol.Verdict{protocol.Success}, "outcome=success", "", 0},
		{"code with spaces", func() []string { return []string{" " + code(step0)[:3] + " " + code(step0)[3:] + " "} },
			[]protocol.Verdict{protocol.Success}, "outcome=success", "", 0},
		{"previous step in window", func() []string { return []string{code(step0 - 1)} }, []protocol.Verdict{protocol.Success}, "outcome=success", "", 0},
		{"next step in window", func() []string { return []string{code(step0 + 1)} }, []protocol.Verdict{protocol.Success}, "outcome=success", "", 0},
		{"replay refused, not counted", func() []string { return []string{code(step0), code(step0)} },
			[]protocol.Verdict{protocol.Success, protocol.AuthErr}, "outcome=replay", "already been used", 0},
		{"older step after newer refused", func() []string { return []string{code(step0 + 1), code(step0)} },
			[]protocol.Verdict{protocol.Success, protocol.AuthErr}, "outcome=replay", "already been used", 0},
		{"wrong code counted", func() []string { return []string{"000000"} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "Verification failed.", 1},
		{"device behind", func() []string { return []string{code(step0 - 5)} }, []protocol.Verdict{protocol.AuthErr},
			"outcome=clock_skew", "seems about 150 seconds behind", 1},
		{"device ahead", func() []string { return []string{code(step0 + 3)} }, []protocol.Verdict{protocol.AuthErr},
			"outcome=clock_skew", "seems about 90 seconds ahead", 1},
		{"beyond skew hint", func() []string { return []string{code(step0 - 11)} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "", 1},
		{"empty answer not counted", func() []string { return []string{""} }, []protocol.Verdict{protocol.AuthErr}, "outcome=empty_answer", "", 0},
		{"letters", func() []string { return []string{"12345a"} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "", 1},
		{"unicode digits", func() []string { return []string{"١٢٣٤٥٦"} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "", 1},
		{"NUL inside", func() []string { return []string{code(step0)[:3] + "\x00" + code(step0)[3:]} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "", 1},
		{"too long", func() []string { return []string{strings.Repeat("1", protocol.MaxAnswer+1)} }, []protocol.Verdict{protocol.AuthErr},
			"outcome=invalid_answer", "too long", 1},
		{"spaces only", func() []string { return []string{"   "} }, []protocol.Verdict{protocol.AuthErr}, "outcome=empty_answer", "", 0},
		{"seven digits", func() []string { return []string{code(step0)[:5] + "00"} }, []protocol.Verdict{protocol.AuthErr}, "outcome=wrong_code", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "")
			f.addToken("alice", "t1", token.Active, totp.DefaultParams, seed)
			answers := tt.answers()
			var c *conv
			for i, a := range answers {
				f.log.Reset()
				var got protocol.Verdict
				got, c = f.auth(req("alice"), a)
				if got != tt.want[i] {
					t.Fatalf("Authenticate #%d = %v, want %v (log: %s)", i, got, tt.want[i], f.log)
				}
			}
			if !strings.Contains(f.log.String(), tt.wantOutcome) {
				t.Errorf("log = %q, want %q", f.log, tt.wantOutcome)
			}
			if !strings.Contains(c.said(), tt.wantSaid) {
				t.Errorf("user was told %q, want %q", c.said(), tt.wantSaid)
			}
			if got := f.failures("alice").Count; got != tt.wantFails {
				t.Errorf("failures = %d, want %d", got, tt.wantFails)
			}
			for _, a := range answers {
				if len(a) >= 6 && strings.Contains(f.log.String(), a) {
					t.Errorf("log contains the answer %q", a)
				}
			}
		})
	}
}

// TestUsedStepFromRegistry: a step the registry used (the code that finished enrollment) and
// sent with the record is refused like one in state.db; later steps are accepted.
func TestUsedStepFromRegistry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	err := store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error {
		return x.PutToken(token.Token{User: "bob", ID: "t1", Name: "t1", Algorithm: totp.SHA1, Digits: 6,
			Period: 30, Secret: seed, State: token.Active, Created: t0, UsedStep: step0})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		step    uint64
		want    protocol.Verdict
		outcome string
	}{{step0, protocol.AuthErr, "replay"}, {step0 - 1, protocol.AuthErr, "replay"}, {step0 + 1, protocol.Success, "success"}} {
		f.log.Reset()
		if got, _ := f.auth(req("bob"), code(tt.step)); got != tt.want || !strings.Contains(f.log.String(), "outcome="+tt.outcome) {
			t.Errorf("Authenticate(code of step %+d) = %v, log %s; want %v, %s", int64(tt.step)-int64(step0), got, f.log, tt.want, tt.outcome)
		}
	}
}

func TestReplayRecordsHighestStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.addToken("alice", "t1", token.Active, totp.DefaultParams, seed)
	if got, _ := f.auth(req("alice"), code(step0+1)); got != protocol.Success {
		t.Fatalf("Authenticate(next step) = %v, want success", got)
	}
	var last uint64
	store.NewState(f.opts()).View(func(x *store.StateTx) error { last = x.LastStep("alice", "t1"); return nil })
	if last != step0+1 {
		t.Errorf("LastStep = %d, want %d", last, step0+1)
	}
	// Two steps later the code of the then-current step is fresh again.
	f.now = t0.Add(60 * time.Second)
	if got, _ := f.auth(req("alice"), code(step0+2)); got != protocol.Success {
		t.Errorf("Authenticate(step+2 at t+60s) = %v, want success", got)
	}
}

func TestTokenKinds(t *testing.T) {
	t.Parallel()
	sha256seed := []byte("12345678901234567890123456789012")
	p8 := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 30}
	p60 := totp.Params{Algorithm: totp.SHA512, Digits: 6, Period: 60}
	tests := []struct {
		name   string
		state  token.State
		params totp.Params
		secret []byte
		answer string
		want   protocol.Verdict
		said   string
	}{
		{"sha256 8 digits", token.Active, p8, sha256seed, totp.Code(sha256seed, p8, step0), protocol.Success, ""},
		{"sha512 60s", token.Active, p60, seed, totp.Code(seed, p60, totp.Step(t0, 60)), protocol.Success, ""},
		{"disabled token", token.Disabled, totp.DefaultParams, seed, code(step0), protocol.AuthErr, "Your two-factor token is disabled."},
		{"pending token", token.Pending, totp.DefaultParams, seed, code(step0), protocol.AuthErr, "not activated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "")
			f.addToken("bob", "t1", tt.state, tt.params, tt.secret)
			got, c := f.auth(req("bob"), tt.answer)
			if got != tt.want {
				t.Fatalf("Authenticate(%s) = %v, want %v (log %s)", tt.name, got, tt.want, f.log)
			}
			if !strings.Contains(c.said(), tt.said) {
				t.Errorf("user was told %q, want %q", c.said(), tt.said)
			}
		})
	}
}

func TestTwoTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	other := []byte("abcdefghijabcdefghij")
	f.addToken("carol", "phone", token.Active, totp.DefaultParams, seed)
	f.addToken("carol", "laptop", token.Active, totp.DefaultParams, other)
	if got, _ := f.auth(req("carol"), totp.Code(other, totp.DefaultParams, step0)); got != protocol.Success {
		t.Fatalf("Authenticate(second token's code) = %v, want success", got)
	}
	if !strings.Contains(f.log.String(), "token=laptop") {
		t.Errorf("log %q does not name token laptop", f.log)
	}
	// The first token's steps are its own: its current code still works.
	if got, _ := f.auth(req("carol"), code(step0)); got != protocol.Success {
		t.Errorf("Authenticate(first token's code) = %v, want success", got)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "[rate_limit]\nfree_failures = 2\ninitial_backoff = \"30s\"\nmax_backoff = \"2m\"\nlockout_after = 6\n")
	f.addToken("dave", "t1", token.Active, totp.DefaultParams, seed)
	wrong := func() (protocol.Verdict, *conv) { return f.auth(req("dave"), "999999") }
	for i := 0; i < 2; i++ {
		if got, c := wrong(); got != protocol.AuthErr || strings.Contains(c.said(), "try again") {
			t.Fatalf("failure %d: %v, told %q; want auth_err without a wait", i+1, got, c.said())
		}
	}
	got, c := wrong() // third: back-off of 30 s starts
	if got != protocol.AuthErr || !strings.Contains(c.said(), "try again in 30 seconds") {
		t.Fatalf("failure 3: %v, told %q; want auth_err and a 30 s wait", got, c.said())
	}
	got, c = f.auth(req("dave"), code(step0))
	if got != protocol.MaxTries || len(c.prompts) != 0 || !strings.Contains(c.said(), "try again in 30 seconds") {
		t.Fatalf("during back-off: %v, prompts %d, told %q; want maxtries, no prompt", got, len(c.prompts), c.said())
	}
	f.now = f.now.Add(31 * time.Second)
	_, c = wrong() // fourth: 60 s
	if !strings.Contains(c.said(), "try again in 1 minute") {
		t.Errorf("failure 4 told %q, want a 1 minute wait", c.said())
	}
	f.now = f.now.Add(61 * time.Second)
	// A success resets everything; successes never count.
	if got, _ = f.auth(req("dave"), code(totp.Step(f.now, 30))); got != protocol.Success {
		t.Fatalf("after back-off, good code = %v, want success", got)
	}
	if n := f.failures("dave").Count; n != 0 {
		t.Errorf("failures after success = %d, want 0", n)
	}
	// lockout_after consecutive failures lock until an admin clears them, whatever the clock says.
	for i := 0; i < 6; i++ {
		f.now = f.now.Add(3 * time.Minute)
		wrong()
	}
	f.now = f.now.Add(24 * time.Hour)
	got, c = f.auth(req("dave"), code(totp.Step(f.now, 30)))
	if got != protocol.MaxTries || !strings.Contains(c.said(), "locked") {
		t.Fatalf("after lockout_after failures: %v, told %q; want maxtries and 'locked'", got, c.said())
	}
	store.NewState(f.opts()).Update(func(x *store.StateTx) error { return x.ClearFailures("dave") })
	if got, _ = f.auth(req("dave"), code(totp.Step(f.now, 30))); got != protocol.Success {
		t.Errorf("after unlock: %v, want success", got)
	}
	// Other users are not affected by dave's failures.
	f.addToken("erin", "t1", token.Active, totp.DefaultParams, seed)
	if got, _ = f.auth(req("erin"), code(totp.Step(f.now, 30))); got != protocol.Success {
		t.Errorf("another user: %v, want success", got)
	}
}

func TestBackupCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.addToken("frank", "t1", token.Active, totp.DefaultParams, seed)
	plain, recs, err := backupcode.New(rand.Reader, "frank", 3, t0)
	if err != nil {
		t.Fatal(err)
	}
	store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error { return x.ReplaceBackupCodes("frank", recs) })
	got, c := f.auth(req("frank"), strings.ToUpper(plain[1]))
	if got != protocol.Success || !strings.Contains(c.said(), "2 left") {
		t.Fatalf("Authenticate(backup code) = %v, told %q; want success and '2 left'", got, c.said())
	}
	if got, _ = f.auth(req("frank"), plain[1]); got != protocol.AuthErr {
		t.Errorf("Authenticate(used backup code) = %v, want auth_err", got)
	}
	if !strings.Contains(f.log.String(), "already used") {
		t.Errorf("log %q does not say the code was already used", f.log)
	}
	if strings.Contains(f.log.String(), plain[1]) || strings.Contains(strings.ToLower(f.log.String()), strings.ReplaceAll(plain[1], "-", "")) {
		t.Errorf("log contains the backup code")
	}
	// Imported google-authenticator scratch codes are 8 digits: tried after the 6-digit TOTP.
	f.addBackup("frank", "12345678")
	if got, _ = f.auth(req("frank"), "12345678"); got != protocol.Success {
		t.Errorf("Authenticate(8-digit scratch code) = %v, want success", got)
	}
	// Backup codes alone (all tokens removed) still let the user in.
	f.addBackup("gina", "87654321")
	if got, _ = f.auth(req("gina"), "87654321"); got != protocol.Success {
		t.Errorf("Authenticate(backup code, no token) = %v, want success", got)
	}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	future := t0.Add(24 * time.Hour).UTC().Format(time.RFC3339)
	past := t0.Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name    string
		conf    string
		req     func() *protocol.Request
		token   bool
		answers []string
		want    protocol.Verdict
		prompts int
		outcome string
		said    string
	}{
		{"mode off", `mode = "off"`, func() *protocol.Request { return req("u") }, true, nil, protocol.Success, 0, "policy_off", ""},
		{"exempt user", `exempt_users = ["u"]`, func() *protocol.Request { return req("u") }, true, nil, protocol.Success, 0, "exempt_user", ""},
		{"exempt group", `exempt_groups = ["svc"]`, func() *protocol.Request { r := req("u"); r.Groups = []string{"users", "svc"}; return r }, true, nil, protocol.Success, 0, "exempt_group", ""},
		{"exempt network", `exempt_networks = ["192.0.2.0/24"]`, func() *protocol.Request { return req("u") }, true, nil, protocol.Success, 0, "exempt_network", ""},
		{"other network", `exempt_networks = ["10.0.0.0/8"]`, func() *protocol.Request { return req("u") }, true, []string{"000000"}, protocol.AuthErr, 1, "wrong_code", ""},
		{"no token enforce", ``, func() *protocol.Request { return req("u") }, false, nil, protocol.AuthErr, 0, "no_token", "No two-factor token"},
		{"no token contact", `contact = "help@hpc.example"`, func() *protocol.Request { return req("u") }, false, nil, protocol.AuthErr, 0, "no_token", "Contact help@hpc.example."},
		{"grace before deadline", "mode = \"grace\"\ngrace_until = " + future, func() *protocol.Request { return req("u") }, false, nil, protocol.Success, 0, "enrollment_grace", "mandatory on"},
		{"grace after deadline", "mode = \"grace\"\ngrace_until = " + past, func() *protocol.Request { return req("u") }, false, nil, protocol.AuthErr, 0, "no_token", ""},
		{"grace with token still asks", "mode = \"grace\"\ngrace_until = " + future, func() *protocol.Request { return req("u") }, true, []string{"000000"}, protocol.AuthErr, 1, "wrong_code", ""},
		{"unknown user prompted", ``, func() *protocol.Request { r := req("ghost"); r.UserKnown = false; return r }, false, []string{"123456"}, protocol.UserUnknown, 1, "unknown_user", ""},
		{"unknown policy", ``, func() *protocol.Request { r := req("u"); r.Policy = "nope"; return r }, true, nil, protocol.SystemErr, 0, "misconfigured", ""},
		{"service section", "[policy.sudo]\nmode = \"off\"\n", func() *protocol.Request { r := req("u"); r.Service = "sudo"; return r }, true, nil, protocol.Success, 0, "policy_off", ""},
		{"no answer", ``, func() *protocol.Request { return req("u") }, true, nil, protocol.AuthErr, 1, "no_answer", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.conf)
			if tt.token {
				f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
			} else {
				// The user's store exists but holds someone else's token.
				f.addToken("other", "t1", token.Active, totp.DefaultParams, seed)
			}
			got, c := f.auth(tt.req(), tt.answers...)
			if got != tt.want {
				t.Fatalf("Authenticate(%s) = %v, want %v (log %s)", tt.name, got, tt.want, f.log)
			}
			if len(c.prompts) != tt.prompts {
				t.Errorf("prompts = %d, want %d", len(c.prompts), tt.prompts)
			}
			if !strings.Contains(f.log.String(), "outcome="+tt.outcome) {
				t.Errorf("log %q, want outcome=%s", f.log, tt.outcome)
			}
			if !strings.Contains(c.said(), tt.said) {
				t.Errorf("told %q, want %q", c.said(), tt.said)
			}
			if n := f.failures("u").Count; tt.outcome != "wrong_code" && n != 0 {
				t.Errorf("failures = %d, want 0 for %s", n, tt.outcome)
			}
		})
	}
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"missing tokens.db", func(t *testing.T, dir string) {}},
		{"corrupt tokens.db", func(t *testing.T, dir string) {
			os.WriteFile(dir+"/tokens.db", bytes.Repeat([]byte("garbage!"), 4096), 0o600)
		}},
		{"empty tokens.db", func(t *testing.T, dir string) { os.WriteFile(dir+"/tokens.db", nil, 0o600) }},
		{"world-readable tokens.db", func(t *testing.T, dir string) {
			os.WriteFile(dir+"/tokens.db", nil, 0o600)
			os.Chmod(dir+"/tokens.db", 0o644)
		}},
		{"symlinked tokens.db", func(t *testing.T, dir string) {
			os.Symlink("/etc/passwd", dir+"/tokens.db")
		}},
		{"open directory", func(t *testing.T, dir string) { os.Chmod(dir, 0o755) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "")
			tt.setup(t, f.cfg.Store.Dir)
			got, c := f.auth(req("u"), code(step0))
			if got != protocol.AuthinfoUnavail {
				t.Fatalf("Authenticate(%s) = %v, want authinfo_unavail (log %s)", tt.name, got, f.log)
			}
			if len(c.prompts) != 0 || !strings.Contains(c.said(), "unavailable") {
				t.Errorf("prompts %d, told %q; want no prompt and 'unavailable'", len(c.prompts), c.said())
			}
			if !strings.Contains(f.log.String(), "outcome=store_unavailable") {
				t.Errorf("log %q lacks outcome=store_unavailable", f.log)
			}
		})
	}
}

func TestPasswordAndCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "password_and_code = true")
	f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
	got, c := f.auth(req("u"), "hunter2"+code(step0))
	if got != protocol.Success {
		t.Fatalf("Authenticate(password+code) = %v, want success (log %s)", got, f.log)
	}
	if c.authtok == nil || *c.authtok != "hunter2" {
		t.Errorf("authtok = %v, want hunter2", c.authtok)
	}
	if c.prompts[0] != "Password and verification code: " {
		t.Errorf("prompt = %q", c.prompts[0])
	}
	got, c = f.auth(req("u"), "hunter2000000")
	if got != protocol.AuthErr || c.authtok == nil || *c.authtok != "hunter2" {
		t.Errorf("Authenticate(password+wrong code) = %v authtok %v, want auth_err and the password handed on", got, c.authtok)
	}
	if strings.Contains(f.log.String(), "hunter2") {
		t.Errorf("log contains the password")
	}
}

func TestSSHGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `ssh_grace = "1h"`)
	f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
	withKey := func(key, rhost string) *protocol.Request {
		r := req("u")
		r.RHost = rhost
		r.SSHAuthInfo = "publickey ssh-ed25519 " + key + "\n"
		return r
	}
	if got, _ := f.auth(withKey("AAAAkey1", "192.0.2.1"), code(step0)); got != protocol.Success {
		t.Fatalf("first login = %v, want success", got)
	}
	tests := []struct {
		name    string
		req     *protocol.Request
		after   time.Duration
		prompts int
	}{
		{"same key and address", withKey("AAAAkey1", "192.0.2.1"), time.Minute, 0},
		{"other key", withKey("AAAAkey2", "192.0.2.1"), time.Minute, 1},
		{"other address", withKey("AAAAkey1", "192.0.2.2"), time.Minute, 1},
		{"no key (password login)", req("u"), time.Minute, 1},
		{"expired", withKey("AAAAkey1", "192.0.2.1"), 61 * time.Minute, 1},
	}
	for _, tt := range tests {
		f.now = t0.Add(tt.after)
		_, c := f.auth(tt.req, "999999")
		if len(c.prompts) != tt.prompts {
			t.Errorf("%s: prompts = %d, want %d", tt.name, len(c.prompts), tt.prompts)
		}
		store.NewState(f.opts()).Update(func(x *store.StateTx) error { return x.ClearFailures("u") })
	}
	// Another user with the same key and address gets no grace from u's login.
	f.addToken("w", "t1", token.Active, totp.DefaultParams, seed)
	f.now = t0.Add(time.Minute)
	r := withKey("AAAAkey1", "192.0.2.1")
	r.User = "w"
	if _, c := f.auth(r, "999999"); len(c.prompts) != 1 {
		t.Errorf("other user: prompts = %d, want 1", len(c.prompts))
	}
}

func TestSudoFreshness(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "[policy.sudo]\nsudo_freshness = \"5m\"\n")
	f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
	sudo := func(session string) *protocol.Request {
		r := req("u")
		r.Service, r.AuditSession, r.RHost = "sudo", session, ""
		return r
	}
	if got, _ := f.auth(sudo("42"), code(step0)); got != protocol.Success {
		t.Fatalf("first sudo = %v", got)
	}
	tests := []struct {
		name    string
		req     *protocol.Request
		after   time.Duration
		prompts int
	}{
		{"same session", sudo("42"), time.Minute, 0},
		{"other session", sudo("43"), time.Minute, 1},
		{"unset audit session", sudo("4294967295"), time.Minute, 1},
		{"after freshness", sudo("42"), 6 * time.Minute, 1},
		{"sshd not covered", func() *protocol.Request { r := sudo("42"); r.Service = "sshd"; return r }(), time.Minute, 1},
	}
	for _, tt := range tests {
		f.now = t0.Add(tt.after)
		_, c := f.auth(tt.req, "999999")
		if len(c.prompts) != tt.prompts {
			t.Errorf("%s: prompts = %d, want %d", tt.name, len(c.prompts), tt.prompts)
		}
		store.NewState(f.opts()).Update(func(x *store.StateTx) error { return x.ClearFailures("u") })
	}
	// Without an audit session, the session leader's pid and start time name the session.
	r := sudo("")
	r.SID = fmt.Sprint(os.Getpid())
	f.now = t0.Add(10 * time.Minute)
	if got, _ := f.auth(r, code(totp.Step(f.now, 30))); got != protocol.Success {
		t.Fatalf("sudo by sid = %v", got)
	}
	if _, c := f.auth(r, "999999"); len(c.prompts) != 0 {
		t.Errorf("same sid again: prompts = %d, want 0", len(c.prompts))
	}
}

func TestConcurrentSameCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
	const n = 20
	results := make(chan protocol.Verdict, n)
	for i := 0; i < n; i++ {
		go func() {
			v := &Verifier{Config: f.cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return t0 }}
			results <- v.Authenticate(req("u"), &conv{answers: []string{code(step0)}})
		}()
	}
	ok := 0
	for i := 0; i < n; i++ {
		if <-results == protocol.Success {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent logins with one code: %d succeeded, want exactly 1", n, ok)
	}
}

func TestStaleStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		conf        string
		lastContact time.Duration // before t0; 0: never
		want        protocol.Verdict
		logs        string
	}{
		{"fresh", "[sync]\nregistry = \"https://r.example\"\nmax_offline = \"1h\"\noffline = \"deny\"\n", time.Minute, protocol.Success, "outcome=success"},
		{"stale, deny", "[sync]\nregistry = \"https://r.example\"\nmax_offline = \"1h\"\noffline = \"deny\"\n", 2 * time.Hour, protocol.AuthinfoUnavail, "outcome=store_stale"},
		{"never synced, deny", "[sync]\nregistry = \"https://r.example\"\nmax_offline = \"1h\"\noffline = \"deny\"\n", 0, protocol.AuthinfoUnavail, "never heard from"},
		{"stale, serve", "[sync]\nregistry = \"https://r.example\"\nmax_offline = \"1h\"\n", 2 * time.Hour, protocol.Success, "token store is stale"},
		{"no limit", "[sync]\nregistry = \"https://r.example\"\noffline = \"deny\"\n", 48 * time.Hour, protocol.Success, "outcome=success"},
		{"standalone ignores it", "[sync]\nmax_offline = \"1h\"\noffline = \"deny\"\n", 0, protocol.Success, "outcome=success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.conf)
			f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
			err := store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error {
				m, err := x.Meta()
				if err != nil {
					return err
				}
				if tt.lastContact > 0 {
					m.LastContact = t0.Add(-tt.lastContact)
				}
				return x.SetMeta(m)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := f.auth(req("u"), code(step0)); got != tt.want {
				t.Fatalf("Authenticate(%s) = %v, want %v (log %s)", tt.name, got, tt.want, f.log)
			}
			if !strings.Contains(f.log.String(), tt.logs) {
				t.Errorf("log %q lacks %q", f.log, tt.logs)
			}
		})
	}
}

func TestPasscode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	rec, err := backupcode.Record(rand.Reader, "u", "4839-2201-7765", t0)
	if err != nil {
		t.Fatal(err)
	}
	rec.Expires = t0.Add(time.Hour)
	store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error { return x.ReplaceBackupCodes("u", []token.BackupCode{rec}) })
	f.now = t0.Add(2 * time.Hour)
	if got, c := f.auth(req("u"), "4839-2201-7765"); got != protocol.AuthErr || !strings.Contains(f.log.String(), "expired") {
		t.Fatalf("expired passcode = %v (told %q, log %s), want auth_err logged as expired", got, c.said(), f.log)
	}
	f.now = t0.Add(time.Minute)
	if got, c := f.auth(req("u"), "483922017765"); got != protocol.Success || !strings.Contains(c.said(), "One-time passcode") {
		t.Fatalf("passcode = %v (told %q), want success", got, c.said())
	}
	if got, _ := f.auth(req("u"), "4839-2201-7765"); got != protocol.AuthErr {
		t.Errorf("passcode reused = %v, want auth_err", got)
	}
}

// TestSkewCodeBurned: a code that matches a step outside the window (a clock-skew hint) is
// refused and counted, and its step is burned: when its time comes, the same code is a replay.
func TestSkewCodeBurned(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.addToken("alice", "t1", token.Active, totp.DefaultParams, seed)
	early := code(step0 + 2)
	if got, c := f.auth(req("alice"), early); got != protocol.AuthErr || !strings.Contains(c.said(), "seems about 60 seconds ahead") {
		t.Fatalf("Authenticate(now+2 steps) = %v, said %q; want AuthErr with the clock hint", got, c.said())
	}
	if got := f.failures("alice").Count; got != 1 {
		t.Errorf("failures = %d, want 1", got)
	}
	f.now = f.now.Add(60 * time.Second) // the code's own step, past the first back-off
	f.log.Reset()
	if got, _ := f.auth(req("alice"), early); got != protocol.AuthErr {
		t.Fatalf("Authenticate(the same code in its step) = %v, want AuthErr (log: %s)", got, f.log)
	}
	if !strings.Contains(f.log.String(), "outcome=replay") {
		t.Errorf("log = %q, want outcome=replay", f.log)
	}
	if got, _ := f.auth(req("alice"), code(step0+3)); got != protocol.Success {
		t.Errorf("Authenticate(a later code) = %v, want Success (log: %s)", got, f.log)
	}
}

// TestDisabledTokenNoGrace: a user whose only token an administrator disabled is denied, also in
// enrollment grace (before, "no active token" meant grace, so any answer let them in).
func TestDisabledTokenNoGrace(t *testing.T) {
	t.Parallel()
	future := t0.Add(24 * time.Hour).UTC().Format(time.RFC3339)
	f := newFixture(t, "mode = \"grace\"\ngrace_until = "+future+"\ncontact = \"help@hpc.example\"")
	f.addToken("u", "t1", token.Disabled, totp.DefaultParams, seed)
	got, c := f.auth(req("u"), "000000")
	if got != protocol.AuthErr || len(c.prompts) != 0 || !strings.Contains(f.log.String(), "outcome=token_disabled") {
		t.Fatalf("Authenticate with a disabled token in grace = %v, %d prompts (log %s); want autherr, no prompt", got, len(c.prompts), f.log)
	}
	if want := "Your two-factor token is disabled. Contact help@hpc.example."; !strings.Contains(c.said(), want) {
		t.Errorf("told %q, want %q", c.said(), want)
	}
}

// TestRemovedLastTokenNoGrace: a user whose last token was removed is denied in grace mode (the
// store keeps the enrolled mark), until an administrator's reset removes the mark.
func TestRemovedLastTokenNoGrace(t *testing.T) {
	t.Parallel()
	future := t0.Add(24 * time.Hour).UTC().Format(time.RFC3339)
	f := newFixture(t, "mode = \"grace\"\ngrace_until = "+future+"\ncontact = \"help@hpc.example\"")
	f.addToken("u", "t1", token.Active, totp.DefaultParams, seed)
	tokens := store.NewTokens(f.opts())
	if err := tokens.Update(func(x *store.TokensTx) error { return x.DeleteToken("u", "t1") }); err != nil {
		t.Fatal(err)
	}
	got, c := f.auth(req("u"), "000000")
	if got != protocol.AuthErr || len(c.prompts) != 0 || !strings.Contains(f.log.String(), "outcome=token_removed") {
		t.Fatalf("Authenticate after the last token was removed, in grace = %v, %d prompts (log %s); want autherr, no prompt", got, len(c.prompts), f.log)
	}
	if want := "You have no active two-factor token any more. Contact help@hpc.example."; !strings.Contains(c.said(), want) {
		t.Errorf("told %q, want %q", c.said(), want)
	}
	if err := tokens.Update(func(x *store.TokensTx) error { return x.DeleteUser("u") }); err != nil { // the reset
		t.Fatal(err)
	}
	if got, _ := f.auth(req("u")); got != protocol.Success || !strings.Contains(f.log.String(), "outcome=enrollment_grace") {
		t.Fatalf("Authenticate after a reset, in grace = %v (log %s); want grace", got, f.log)
	}
}
