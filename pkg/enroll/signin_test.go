package enroll_test

import (
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// memState is one user's records in memory.
type memState struct {
	tokens   map[string]token.Token
	pending  map[string]enroll.Pending
	steps    map[string]uint64
	failures token.Failures
	signIns  token.Failures
	backup   []token.BackupCode
	boot     *token.BackupCode
	enrolled bool // the user removed their last token
	audits   []string
}

func (m memState) clone() memState {
	c := m
	c.tokens, c.pending, c.steps = maps.Clone(m.tokens), maps.Clone(m.pending), maps.Clone(m.steps)
	c.backup, c.audits = slices.Clone(m.backup), slices.Clone(m.audits)
	return c
}

// memStore is an enroll.Store of one user in memory: a transaction works on a copy, kept when
// fn returns nil.
type memStore struct {
	user string
	st   memState
}

func (m *memStore) Change(_ context.Context, user string, _ time.Time, fn func(enroll.Tx) error) error {
	if user != m.user {
		return refusal.New(refusal.NotFound, "no such user")
	}
	x := &memTx{memState: m.st.clone()}
	if err := fn(x); err != nil {
		return err
	}
	m.st = x.memState
	return nil
}

type memTx struct{ memState }

func (x *memTx) Tokens() ([]token.Token, error) {
	return slices.SortedFunc(maps.Values(x.tokens), func(a, b token.Token) int { return strings.Compare(a.ID, b.ID) }), nil
}
func (x *memTx) PutToken(t token.Token) error { x.tokens[t.ID] = t; return nil }
func (x *memTx) DeleteToken(id string) error  { delete(x.tokens, id); return nil }
func (x *memTx) Pending() ([]enroll.Pending, error) {
	return slices.Collect(maps.Values(x.pending)), nil
}
func (x *memTx) PutPending(p enroll.Pending) error       { x.pending[p.Token.ID] = p; return nil }
func (x *memTx) DeletePending(id string) error           { delete(x.pending, id); return nil }
func (x *memTx) LastStep(id string) (uint64, error)      { return x.steps[id], nil }
func (x *memTx) SetStep(id string, step uint64) error    { x.steps[id] = step; return nil }
func (x *memTx) Failures() (token.Failures, error)       { return x.failures, nil }
func (x *memTx) SetFailures(f token.Failures) error      { x.failures = f; return nil }
func (x *memTx) SignInFailures() (token.Failures, error) { return x.signIns, nil }
func (x *memTx) SetSignInFailures(f token.Failures) error {
	x.signIns = f
	return nil
}
func (x *memTx) BackupCodes() ([]token.BackupCode, error) { return slices.Clone(x.backup), nil }
func (x *memTx) UseBackupCode(c token.BackupCode) error {
	x.backup = slices.DeleteFunc(x.backup, func(b token.BackupCode) bool { return b.ID == c.ID })
	return nil
}
func (x *memTx) ReplaceBackupCodes(recs []token.BackupCode) error {
	x.backup = slices.Clone(recs)
	return nil
}
func (x *memTx) Bootstrap() (token.BackupCode, bool, error) {
	if x.boot == nil {
		return token.BackupCode{}, false, nil
	}
	return *x.boot, true, nil
}
func (x *memTx) PutBootstrap(c token.BackupCode) error { x.boot = &c; return nil }
func (x *memTx) UseBootstrap() error                   { x.boot = nil; return nil }
func (x *memTx) Mail() string                          { return "ann@example.org" }
func (x *memTx) Enrolled() (bool, error)               { return x.enrolled, nil }
func (x *memTx) Audit(action, _, _ string) error {
	x.audits = append(x.audits, action)
	return nil
}

// signInEnv is a service on a memStore whose user ann has one active token.
type signInEnv struct {
	t     *testing.T
	svc   *enroll.Service
	store *memStore
	now   time.Time
	key   totp.Key
}

var limits = token.Limits{FreeFailures: 3, InitialBackoff: 30 * time.Second, MaxBackoff: 15 * time.Minute, LockoutAfter: 10}

func newSignInEnv(t *testing.T) *signInEnv {
	t.Helper()
	e := &signInEnv{t: t, store: &memStore{user: "ann", st: memState{tokens: map[string]token.Token{},
		pending: map[string]enroll.Pending{}, steps: map[string]uint64{}}},
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e.svc = &enroll.Service{Store: e.store, Rand: rand.Reader, Now: func() time.Time { return e.now },
		Rules: enroll.Rules{Window: 1, Limits: limits}}
	en, err := e.svc.Begin(context.Background(), "ann", "phone", "")
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if e.key, err = totp.ParseURI(en.URI); err != nil {
		t.Fatal(err)
	}
	if f, err := e.svc.Finish(context.Background(), "ann", en.ID, e.code()); err != nil || f.Status != registryapi.StatusActive {
		t.Fatalf("Finish = %+v, %v; want active", f.FinishResult, err)
	}
	e.advance(30 * time.Second)
	return e
}

func (e *signInEnv) advance(d time.Duration) { e.now = e.now.Add(d) }

// code is the token's code at now.
func (e *signInEnv) code() string {
	return totp.Code(e.key.Secret, e.key.Params, totp.Step(e.now, e.key.Params.Period))
}

func (e *signInEnv) signIn(answer string, mailed bool) error {
	return e.svc.SignIn(context.Background(), "ann", answer, mailed)
}

// tooMany checks that err refuses with refusal.TooMany saying text, and a retry-after when
// wait is set.
func tooMany(t *testing.T, what string, err error, text string, wait bool) {
	t.Helper()
	var re *refusal.Error
	if !errors.As(err, &re) || re.Kind != refusal.TooMany || !strings.Contains(re.Message, text) || (re.RetryAfter > 0) != wait {
		t.Errorf("%s = %v; want too many (%q, retry-after %v)", what, err, text, wait)
	}
}

// TestSignInFailures: wrong sign-in answers (codes, backup codes, mailed codes) count in the
// sign-in record under Rules.Limits, never in the proof record that logins read: a back-off
// that even the right code waits out, a right code after it clears the record, and
// LockoutAfter failures lock sign-in by code for good while proofs go on.
func TestSignInFailures(t *testing.T) {
	t.Parallel()
	e := newSignInEnv(t)
	wrong := []struct {
		answer string
		mailed bool
	}{{"000000", false}, {"ABCD-EFGH-JKMN", false}, {"ABCD-EFGH-JKMN", true}}
	for i := range limits.FreeFailures {
		w := wrong[i%len(wrong)]
		if err := e.signIn(w.answer, w.mailed); err == nil || strings.Contains(err.Error(), "too many") {
			t.Fatalf("SignIn(wrong %d, mailed %v) = %v, want not accepted", i, w.mailed, err)
		}
	}
	if got := e.store.st.signIns.Count; got != limits.FreeFailures {
		t.Errorf("sign-in failures = %d, want %d", got, limits.FreeFailures)
	}
	if e.store.st.failures != (token.Failures{}) {
		t.Errorf("proof record = %+v after wrong sign-ins, want untouched", e.store.st.failures)
	}
	if n := slices.Index(e.store.st.audits, "portal.signin_failed"); n < 0 {
		t.Errorf("audits %v, want portal.signin_failed", e.store.st.audits)
	}
	// The first failure beyond the free ones starts the back-off: the right code waits.
	if err := e.signIn("000000", false); err == nil {
		t.Fatal("SignIn(wrong) accepted")
	}
	tooMany(t, "SignIn(right code, in the back-off)", e.signIn(e.code(), false), "too many failed sign-ins", true)
	e.advance(limits.InitialBackoff)
	if err := e.signIn(e.code(), false); err != nil {
		t.Fatalf("SignIn(right code, after the back-off) = %v", err)
	}
	if e.store.st.signIns != (token.Failures{}) {
		t.Errorf("sign-in record after a right code = %+v, want cleared", e.store.st.signIns)
	}
	// LockoutAfter wrong answers, each after its back-off, lock sign-in by code for good.
	for i := range limits.LockoutAfter {
		e.advance(time.Hour)
		if err := e.signIn("000000", i%2 == 0); err == nil {
			t.Fatalf("SignIn(wrong %d) accepted", i)
		}
	}
	e.advance(24 * time.Hour)
	e.advance(30 * time.Second)
	tooMany(t, "SignIn(right code, locked)", e.signIn(e.code(), false), "signing in to the portal with a code is locked", false)
	tooMany(t, "SignIn(mailed, locked)", e.signIn("ABCD-EFGH-JKMN", true), "signing in to the portal with a code is locked", false)
	if e.store.st.failures != (token.Failures{}) {
		t.Errorf("proof record = %+v after a sign-in lock, want untouched", e.store.st.failures)
	}
	// The lock is the sign-in's only: a proof goes through, and a mailed code is still mailed.
	if _, err := e.svc.Begin(context.Background(), "ann", "second", e.code()); err != nil {
		t.Errorf("Begin(right proof) with sign-in locked = %v, want accepted", err)
	}
	if _, _, _, err := e.svc.SignInCode(context.Background(), "ann"); err != nil {
		t.Errorf("SignInCode with sign-in locked = %v, want a code", err)
	}
}

// TestSignInProofLock: a back-off or a lock of the proof record (failed proofs, wrong codes at
// logins) refuses sign-in by code and by mailed code, without counting in the sign-in record;
// proofs still count in the proof record.
func TestSignInProofLock(t *testing.T) {
	t.Parallel()
	e := newSignInEnv(t)
	for i := range limits.FreeFailures + 1 {
		if _, err := e.svc.Begin(context.Background(), "ann", "second", "000000"); err == nil {
			t.Fatalf("Begin(wrong proof %d) accepted", i)
		}
	}
	if e.store.st.failures.Count != limits.FreeFailures+1 || e.store.st.signIns != (token.Failures{}) {
		t.Fatalf("records after wrong proofs: proofs %+v, sign-ins %+v", e.store.st.failures, e.store.st.signIns)
	}
	tooMany(t, "SignIn(right code, proofs in back-off)", e.signIn(e.code(), false), "too many failed proofs", true)
	// A lock (the nodes' count reached it, say) holds whatever the wait.
	e.store.st.failures = token.Failures{Count: limits.LockoutAfter, Last: e.now}
	e.advance(24 * time.Hour)
	tooMany(t, "SignIn(right code, proofs locked)", e.signIn(e.code(), false), "ask your administrators to unlock you", false)
	code, _, _, err := e.svc.SignInCode(context.Background(), "ann")
	if err != nil {
		t.Fatalf("SignInCode = %v", err)
	}
	tooMany(t, "SignIn(mailed code, proofs locked)", e.signIn(code, true), "ask your administrators to unlock you", false)
	if e.store.st.signIns != (token.Failures{}) {
		t.Errorf("sign-in record = %+v, want untouched by refusals for the proof lock", e.store.st.signIns)
	}
	// Unlocked, the mailed code signs in.
	e.store.st.failures = token.Failures{}
	if err := e.signIn(code, true); err != nil {
		t.Errorf("SignIn(mailed code) after the unlock = %v", err)
	}
}

// TestBeginSignedInAfterDisableOrRemoval: a session signed in by mail or the identity provider
// may add a first token after the user removed their last one, but not after an administrator
// disabled the user's tokens, unless the site trusts mailed bootstrap codes for that.
func TestBeginSignedInAfterDisableOrRemoval(t *testing.T) {
	ctx := context.Background()
	disabled := func(bootstrap bool) *signInEnv {
		e := newSignInEnv(t)
		for id, tok := range e.store.st.tokens {
			tok.State = token.Disabled
			e.store.st.tokens[id] = tok
		}
		e.svc.Rules.Bootstrap = bootstrap
		return e
	}
	e := disabled(false)
	if _, err := e.svc.BeginSignedIn(ctx, "ann", "new", ""); err == nil {
		t.Error("BeginSignedIn after an administrator disabled the tokens (no bootstrap codes) succeeded, want refused")
	} else if re, ok := refusal.As(err); !ok || !strings.Contains(re.Message, "reset") {
		t.Errorf("BeginSignedIn after a disable = %v, want the refusal that asks for a reset", err)
	}
	if _, err := disabled(true).svc.BeginSignedIn(ctx, "ann", "new", ""); err != nil {
		t.Errorf("BeginSignedIn after a disable where mailed codes are trusted = %v, want a pending token", err)
	}

	e = newSignInEnv(t)
	clear(e.store.st.tokens)
	e.store.st.enrolled = true
	if _, err := e.svc.Begin(ctx, "ann", "new", ""); err == nil {
		t.Error("Begin without a sign-in after the user removed their last token succeeded, want refused")
	}
	if _, err := e.svc.BeginSignedIn(ctx, "ann", "new", ""); err != nil {
		t.Errorf("BeginSignedIn after the user removed their last token = %v, want a pending token", err)
	}
}
