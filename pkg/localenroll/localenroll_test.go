package localenroll

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/enroll/enrolltest"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// t0 is an RFC 6238 test instant.
var t0 = time.Unix(1111111109, 0).UTC()

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t   *testing.T
	a   *Authority
	adm *admin.Admin // the administrator's view of the same store
	clk *fakeClock
	cfg *config.Config
}

func newFixture(t *testing.T, maxTokens int) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Store.Dir = dir
	clk := &fakeClock{t: t0}
	a, err := New(Options{Config: &cfg, MaxTokens: maxTokens, Now: clk.now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	adm := admin.New(&cfg)
	adm.Now = clk.now
	return &fixture{t: t, a: a, adm: adm, clk: clk, cfg: &cfg}
}

var ctx = context.Background()

// begin starts a token and returns its id and key.
func (f *fixture) begin(user, name, proof string) (string, totp.Key) {
	f.t.Helper()
	e, err := f.a.Begin(ctx, user, name, proof)
	if err != nil {
		f.t.Fatalf("Begin(%s, %q): %v", user, name, err)
	}
	if want := f.clk.now().Truncate(time.Second).Add(enroll.PendingTTL); !e.Expires.Equal(want) {
		f.t.Errorf("Begin expires %v, want %v", e.Expires, want)
	}
	k, err := totp.ParseURI(e.URI)
	if err != nil {
		f.t.Fatalf("Begin returned an unusable URI: %v", err)
	}
	if k.Account != user || k.Issuer != f.cfg.Issuer {
		f.t.Errorf("URI account %q issuer %q, want %q %q", k.Account, k.Issuer, user, f.cfg.Issuer)
	}
	return e.ID, k
}

// code is k's code steps time steps from now.
func (f *fixture) code(k totp.Key, steps int) string {
	return totp.Code(k.Secret, k.Params, uint64(int64(totp.Step(f.clk.now(), k.Params.Period))+int64(steps)))
}

// enroll begins and finishes a token with a current code, and returns the key and codes.
func (f *fixture) enroll(user, name, proof string) (string, totp.Key, []string) {
	f.t.Helper()
	id, k := f.begin(user, name, proof)
	r, err := f.a.Finish(ctx, user, id, f.code(k, 0))
	if err != nil || r.Status != "active" {
		f.t.Fatalf("Finish(%s) = %+v, %v; want active", id, r, err)
	}
	return id, k, r.BackupCodes
}

func (f *fixture) tokens(user string) []token.Token {
	f.t.Helper()
	var toks []token.Token
	err := f.adm.Tokens.View(func(x *store.TokensTx) error {
		var err error
		toks, err = x.UserTokens(user)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNoStore) {
		f.t.Fatal(err)
	}
	return toks
}

// refusalName is the D-Bus error name the refusal in err reaches the user with, "" for none.
func refusalName(err error) string {
	if r, ok := refusal.As(err); ok {
		return syncbus.ErrorName(r.Kind)
	}
	return ""
}

func TestFirstTokenThenProofs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, k := f.begin("alice", "phone", "")
	if toks := f.tokens("alice"); len(toks) != 1 || toks[0].State != token.Pending || toks[0].Name != "phone" {
		t.Fatalf("after Begin: %+v, want one pending token named phone", toks)
	}
	for _, tt := range []struct {
		name, code, want string
		skew             int
	}{
		{"not a code", "abc", "wrong_code", 0},
		{"wrong code", f.code(k, 5)[:5] + "x", "wrong_code", 0},
		{"clock behind", f.code(k, -4), "clock_skew", -120},
		{"clock ahead", f.code(k, 3), "clock_skew", 90},
	} {
		r, err := f.a.Finish(ctx, "alice", id, tt.code)
		if err != nil || r.Status != tt.want || r.SkewS != tt.skew || r.BackupCodes != nil {
			t.Errorf("%s: Finish = %+v, %v; want %s, skew %d, no codes", tt.name, r, err, tt.want, tt.skew)
		}
	}
	// The code shown 3 steps early burned its step: when its time comes it is refused.
	f.clk.add(90 * time.Second)
	if r, err := f.a.Finish(ctx, "alice", id, f.code(k, 0)); err != nil || r.Status != "wrong_code" {
		t.Errorf("Finish(the early code in its own step) = %+v, %v; want wrong_code", r, err)
	}
	f.clk.add(30 * time.Second)
	code := f.code(k, 0)
	r, err := f.a.Finish(ctx, "alice", id, code)
	if err != nil || r.Status != "active" || len(r.BackupCodes) == 0 {
		t.Fatalf("Finish(right code) = %+v, %v; want active with backup codes", r, err)
	}
	if toks := f.tokens("alice"); toks[0].State != token.Active {
		t.Fatalf("after Finish: state %s, want active", toks[0].State)
	}
	if r, err := f.a.Finish(ctx, "alice", id, code); err != nil || r.Status != "active" {
		t.Errorf("Finish again = %+v, %v; want active (idempotent)", r, err)
	}

	// A second token needs a proof; the finishing code itself was used up (replay rule).
	for _, tt := range []struct{ name, proof string }{
		{"no proof", ""},
		{"the code that finished enrollment", code},
		{"a wrong code", "000000"},
	} {
		if _, err := f.a.Begin(ctx, "alice", "laptop", tt.proof); refusalName(err) != syncbus.ErrRefused {
			t.Errorf("Begin(second, %s) = %v; want a refusal", tt.name, err)
		}
	}
	if n := len(f.tokens("alice")); n != 1 {
		t.Fatalf("after refused Begins: %d tokens, want 1", n)
	}
	f.clk.add(30 * time.Second)
	id2, _ := f.begin("alice", "laptop", f.code(k, 0))
	// A backup code is a proof too, and only once.
	if err := f.a.Remove(ctx, "alice", id2, ""); err != nil {
		t.Fatalf("Remove(pending, no proof) = %v; want nil", err)
	}
	if _, err := f.a.Begin(ctx, "alice", "laptop", r.BackupCodes[0]); err != nil {
		t.Fatalf("Begin(second, backup code) = %v", err)
	}
	if _, err := f.a.Begin(ctx, "alice", "tablet", r.BackupCodes[0]); refusalName(err) != syncbus.ErrRefused {
		t.Errorf("Begin(third, the same backup code) = %v; want a refusal", err)
	}
	if r, err := f.a.Finish(ctx, "alice", "nope", "123456"); refusalName(err) != syncbus.ErrNotFound {
		t.Errorf("Finish(unknown id) = %+v, %v; want NotFound", r, err)
	}
}

func TestPendingExpires(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, k := f.begin("bob", "", "")
	f.clk.add(enroll.PendingTTL - time.Second)
	if n, err := f.a.Sweep(""); n != 0 || err != nil {
		t.Fatalf("Sweep before the TTL = %d, %v; want 0", n, err)
	}
	f.clk.add(time.Second)
	r, err := f.a.Finish(ctx, "bob", id, f.code(k, 0))
	if err != nil || r.Status != "expired" {
		t.Fatalf("Finish after the TTL = %+v, %v; want expired", r, err)
	}
	if toks := f.tokens("bob"); len(toks) != 0 {
		t.Fatalf("expired token kept: %+v", toks)
	}
	// The sweeper removes others without anyone finishing them.
	f.begin("bob", "", "")
	f.begin("carol", "", "")
	f.clk.add(enroll.PendingTTL)
	if n, err := f.a.Sweep(""); n != 2 || err != nil {
		t.Fatalf("Sweep = %d, %v; want 2", n, err)
	}
	if len(f.tokens("bob"))+len(f.tokens("carol")) != 0 {
		t.Fatal("Sweep left pending tokens")
	}
}

func TestMaxTokensAndRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	id1, k, _ := f.enroll("dave", "one", "")
	f.clk.add(30 * time.Second)
	f.begin("dave", "two", f.code(k, 0))
	f.clk.add(30 * time.Second)
	_, err := f.a.Begin(ctx, "dave", "three", f.code(k, 0))
	if refusalName(err) != syncbus.ErrRefused || !strings.Contains(err.Error(), "the most this site allows") {
		t.Fatalf("Begin(third of 2) = %v; want the bound", err)
	}
	if err := f.a.Remove(ctx, "dave", id1, "999999"); refusalName(err) != syncbus.ErrRefused {
		t.Fatalf("Remove(active, wrong proof) = %v; want a refusal", err)
	}
	if err := f.a.Remove(ctx, "dave", "nope", ""); refusalName(err) != syncbus.ErrNotFound {
		t.Fatalf("Remove(unknown) = %v; want NotFound", err)
	}
	if err := f.a.Rename(ctx, "dave", id1, "old phone"); err != nil {
		t.Fatal(err)
	}
	if err := f.a.Rename(ctx, "dave", id1, "bad\x1bname"); refusalName(err) != syncbus.ErrInvalid {
		t.Fatalf("Rename(control characters) = %v; want Invalid", err)
	}
	f.clk.add(30 * time.Second)
	if err := f.a.Remove(ctx, "dave", id1, f.code(k, 0)); err != nil {
		t.Fatalf("Remove(active, current code) = %v", err)
	}
	for _, tok := range f.tokens("dave") {
		if tok.ID == id1 {
			t.Fatal("removed token still there")
		}
	}
	if _, err := f.a.Bootstrap(ctx, "dave"); refusalName(err) != syncbus.ErrRefused {
		t.Errorf("Bootstrap = %v; want a refusal on a standalone node", err)
	}
}

// Proof failures count like login failures: after the free ones a back-off refuses even a right
// code, and new backup codes need a proof.
func TestProofFailuresShareTheLoginBackoff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	_, k, old := f.enroll("erin", "", "")
	if _, err := f.a.BackupCodes(ctx, "erin", ""); refusalName(err) != syncbus.ErrRefused {
		t.Fatalf("BackupCodes(no proof) = %v; want a refusal", err)
	}
	for i := 0; i < f.cfg.RateLimit.FreeFailures+1; i++ {
		f.a.BackupCodes(ctx, "erin", "123123")
	}
	f.clk.add(10 * time.Second) // the next time step, inside the 30 s back-off
	_, err := f.a.BackupCodes(ctx, "erin", f.code(k, 0))
	if refusalName(err) != syncbus.ErrRefused || !strings.Contains(err.Error(), "try again in") {
		t.Fatalf("BackupCodes(right code during back-off) = %v; want the back-off", err)
	}
	f.clk.add(f.cfg.RateLimit.InitialBackoff)
	codes, err := f.a.BackupCodes(ctx, "erin", f.code(k, 0))
	if err != nil || len(codes) == 0 || codes[0] == old[0] {
		t.Fatalf("BackupCodes(after the back-off) = %d codes, %v; want a new set", len(codes), err)
	}
	if _, err := f.a.BackupCodes(ctx, "erin", old[1]); refusalName(err) != syncbus.ErrRefused {
		t.Errorf("an old backup code still proves: %v", err)
	}
}

func TestRefusesRegistryNode(t *testing.T) {
	cfg := config.Default()
	cfg.Sync.Registry = config.URLs{"https://registry.example:8443"}
	if _, err := New(Options{Config: &cfg}); err == nil {
		t.Fatal("New on a node that follows a registry: nil error")
	}
}

// A user name the store takes but an otpauth label cannot hold is refused as Invalid, and
// nothing is written.
func TestUnusableAccountName(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	const user = "ad:alice"
	if err := token.ValidUser(user); err != nil {
		t.Skipf("the store refuses %q itself: %v", user, err)
	}
	if _, err := f.a.Begin(ctx, user, "", ""); refusalName(err) != syncbus.ErrInvalid {
		t.Fatalf("Begin(%q) = %v; want Invalid", user, err)
	}
	if toks := f.tokens(user); len(toks) != 0 {
		t.Fatalf("tokens written for %q: %+v", user, toks)
	}
}

// TestSkewCodeBurned: a code for now+2 steps gets the clock hint and is refused when its time
// comes (Finish burns its step through admin.Confirm); a later code finishes.
func TestSkewCodeBurned(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, k := f.begin("alice", "phone", "")
	early := f.code(k, 2)
	if r, err := f.a.Finish(ctx, "alice", id, early); err != nil || r.Status != "clock_skew" || r.SkewS != 60 {
		t.Fatalf("Finish(now+2 steps) = %+v, %v; want clock_skew 60", r, err)
	}
	f.clk.add(60 * time.Second)
	if r, err := f.a.Finish(ctx, "alice", id, early); err != nil || r.Status != "wrong_code" {
		t.Fatalf("Finish(the same code in its step) = %+v, %v; want wrong_code", r, err)
	}
	if r, err := f.a.Finish(ctx, "alice", id, f.code(k, 1)); err != nil || r.Status != "active" {
		t.Fatalf("Finish(a later code) = %+v, %v; want active", r, err)
	}
}

// TestPendingFirstTokens: a pending token begun without a proof cannot add a second token
// without one: a new first enrollment replaces an older one, and one that finishes after another
// token became active is refused (before, each pending first token could be finished later).
func TestPendingFirstTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	idA, kA := f.begin("ann", "a", "")
	idB, kB := f.begin("ann", "b", "")
	if _, err := f.a.Finish(ctx, "ann", idA, f.code(kA, 0)); refusalName(err) != syncbus.ErrNotFound {
		t.Errorf("Finish of a replaced first enrollment: %v, want NotFound", err)
	}
	// The administrator adds an active token (totp-admin token add) while b is pending.
	if _, err := f.adm.AddToken("ann", admin.AddOptions{Name: "desk", Active: true}); err != nil {
		t.Fatal(err)
	}
	_, err := f.a.Finish(ctx, "ann", idB, f.code(kB, 0))
	if refusalName(err) != syncbus.ErrRefused || !strings.Contains(err.Error(), "begin again, with a code from that token") {
		t.Errorf("Finish of a first enrollment after another token became active: %v, want refused", err)
	}
	if toks := f.tokens("ann"); len(toks) != 1 || toks[0].Name != "desk" {
		t.Errorf("tokens of ann = %+v, want only the administrator's", toks)
	}
}

// TestDisabledNoFirstToken: on a standalone node too, a disabled token blocks a new first token.
func TestDisabledNoFirstToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, _, _ := f.enroll("ann", "phone", "")
	if _, _, err := f.adm.SetState("ann", id, token.Disabled); err != nil {
		t.Fatal(err)
	}
	_, err := f.a.Begin(ctx, "ann", "new", "")
	if refusalName(err) != syncbus.ErrRefused || !strings.Contains(err.Error(), "your token is disabled") {
		t.Errorf("Begin with only a disabled token: %v, want refused", err)
	}
}

// TestRemovedLastTokenNeedsReset: a user who removed their last token gets no new first token
// without a proof; after an administrator's reset they enroll as a new user.
func TestRemovedLastTokenNeedsReset(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, k, _ := f.enroll("ann", "phone", "")
	f.clk.add(30 * time.Second)
	if err := f.a.Remove(ctx, "ann", id, f.code(k, 0)); err != nil {
		t.Fatalf("Remove(last token, with its code) = %v", err)
	}
	_, err := f.a.Begin(ctx, "ann", "new", "")
	if refusalName(err) != syncbus.ErrRefused || !strings.Contains(err.Error(), "reset your second factor") {
		t.Fatalf("Begin after removing the last token: %v, want refused until a reset", err)
	}
	if _, err := f.adm.Reset("ann"); err != nil {
		t.Fatal(err)
	}
	f.enroll("ann", "new", "")
}

// TestSkewCountsAsFailure: a finishing code from outside the window is counted against the
// failures that logins share.
func TestSkewCountsAsFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	id, k := f.begin("ann", "phone", "")
	if r, err := f.a.Finish(ctx, "ann", id, f.code(k, 3)); err != nil || r.Status != "clock_skew" {
		t.Fatalf("Finish(now+3 steps) = %+v, %v; want clock_skew", r, err)
	}
	var fl token.Failures
	if err := f.adm.State.View(func(x *store.StateTx) error { fl = x.Failures("ann"); return nil }); err != nil {
		t.Fatal(err)
	}
	if fl.Count != 1 {
		t.Errorf("failures after a skewed finishing code = %d, want 1", fl.Count)
	}
}

// TestRules runs the enrollment rules' table on a standalone node's files.
func TestRules(t *testing.T) {
	enrolltest.Run(t, func(t *testing.T) enrolltest.Env {
		f := newFixture(t, 0)
		return enrolltest.Env{Service: f.a.svc, User: "ann", Advance: f.clk.add, Reset: func() {
			if _, err := f.adm.Reset("ann"); err != nil {
				t.Fatal(err)
			}
		}}
	})
}

// TestNoPortalSignIn: a standalone node serves no portal; a sign-in there that would count a
// failure is an error and writes nothing, so the login failures stay as they were.
func TestNoPortalSignIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	f.enroll("ann", "", "")
	if err := f.a.svc.SignIn(ctx, "ann", "000000", false); err == nil || !strings.Contains(err.Error(), "no portal sign-in") {
		t.Errorf("SignIn(wrong code) on a node = %v, want the node's error", err)
	}
	var fl token.Failures
	if err := f.adm.State.View(func(x *store.StateTx) error { fl = x.Failures("ann"); return nil }); err != nil {
		t.Fatal(err)
	}
	if fl.Count != 0 {
		t.Errorf("login failures after a refused sign-in = %d, want 0", fl.Count)
	}
}

// TestPendingHardwareTokenExpiresBack: a hardware token assigned to a user but never verified
// (pending) goes back to the unassigned ones when the sweep removes it, with its seed: the
// device can be assigned again.
func TestPendingHardwareTokenExpiresBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	h := token.Hardware{HardwareInfo: token.HardwareInfo{Serial: "HW-1", Algorithm: "SHA1", Digits: 6, Period: 30},
		Secret: []byte("12345678901234567890")}
	if err := f.adm.Tokens.Update(func(x *store.TokensTx) error {
		return x.PutToken(h.Assign("bob", "hw000001", f.clk.now()))
	}); err != nil {
		t.Fatal(err)
	}
	f.clk.add(enroll.PendingTTL)
	if n, err := f.a.Sweep(""); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	var back token.Hardware
	if err := f.adm.Tokens.View(func(x *store.TokensTx) error {
		var err error
		back, err = x.Hardware("HW-1")
		return err
	}); err != nil {
		t.Fatalf("the expired pending hardware token is not unassigned again: %v", err)
	}
	if string(back.Secret) != string(h.Secret) {
		t.Error("the unassigned hardware token lost its seed")
	}
}
