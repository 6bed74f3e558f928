package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// newSignInEnv is a portal whose user ann signed in by mail and added a first token; it returns
// the token's secret.
func newSignInEnv(t *testing.T) (*portalEnv, string) {
	t.Helper()
	e := newPortalEnv(t, nil)
	b := e.browser()
	_, secret, _ := e.addFirstToken(b, e.signInMail(b, "ann", "ann@example.org"), "")
	return e, secret
}

// signInCode signs ann in with code from browser c, whose sign-in page is p.
func signInCode(c *browser, p page, code string) page {
	c.t.Helper()
	return c.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", code)
}

// signInFailures is the user's sign-in failure record at the registry.
func (e *portalEnv) signInFailures(user string) token.Failures {
	e.t.Helper()
	var f token.Failures
	if err := e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		var err error
		f, err = (&txn{Txn: tx, s: e.srv}).signInFailures(user)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return f
}

// signInRefusal is the refusal of a sign-in with answer, asked of the rules the portal uses.
func (e *portalEnv) signInRefusal(user, answer string) *refusal.Error {
	e.t.Helper()
	err := (&portalBackend{s: e.srv}).SignIn(context.Background(), user, answer, false)
	var re *refusal.Error
	if !errors.As(err, &re) {
		e.t.Fatalf("SignIn(%s) = %v, want a refusal", user, err)
	}
	return re
}

// loginsUnlocked checks that user's failure record as nodes receive it locks nothing.
func (e *portalEnv) loginsUnlocked(user string) token.SharedFailures {
	e.t.Helper()
	f, _ := e.failuresRecord(user)
	forGood, wait := f.Locked(e.clock.now(), e.srv.cfg.Enroll.proofLimits())
	if f.Count != 0 || forGood || wait != 0 {
		e.t.Errorf("%s's failure record at the nodes %+v: locked %v, back-off %v; want no failures", user, f, forGood, wait)
	}
	return f
}

// TestPortalSignInFailuresSpareLogins: wrong sign-in codes at the portal count in the user's
// sign-in record at the registry, not in the record nodes read: the back-off holds even the
// right code (with a retry-after) and a right code after it clears the record; max_failures+1
// wrong codes lock sign-in by code, and only that: the nodes' record is unchanged, the user's
// logins are not locked, proofs of the CLI go through; an administrator's unlock ends it.
func TestPortalSignInFailuresSpareLogins(t *testing.T) {
	t.Parallel()
	e, secret := newSignInEnv(t)
	before, had := e.failuresRecord("ann")

	c := e.browser()
	p := c.get("/portal/signin")
	wrong := func(what string) {
		t.Helper()
		if r := signInCode(c, p, "000000"); r.status != 403 {
			t.Fatalf("%s = %d at %s, want 403", what, r.status, r.url)
		}
	}
	// The free failures, then one that starts the back-off.
	for i := range proofFreeFailures + 1 {
		wrong(fmt.Sprintf("wrong code %d", i+1))
	}
	if f := e.signInFailures("ann"); f.Count != proofFreeFailures+1 || f.Until.IsZero() {
		t.Errorf("sign-in record after %d wrong codes = %+v, want the count and a back-off", proofFreeFailures+1, f)
	}
	if r := signInCode(c, p, e.code(secret, 0)); r.status != 403 {
		t.Errorf("right code in the back-off = %d at %s, want 403", r.status, r.url)
	}
	if re := e.signInRefusal("ann", e.code(secret, 0)); re.Kind != refusal.TooMany || re.RetryAfter <= 0 || re.RetryAfter > proofBackoff {
		t.Errorf("SignIn(right code, in the back-off) = %v (retry after %v), want too many with a retry-after up to %v", re, re.RetryAfter, proofBackoff)
	}
	e.clock.add(proofBackoff)
	if r := signInCode(c, p, e.code(secret, 0)); r.url != "/portal/tokens" {
		t.Fatalf("right code after the back-off = %d at %s, want signed in", r.status, r.url)
	}
	if f := e.signInFailures("ann"); f != (token.Failures{}) {
		t.Errorf("sign-in record after a right code = %+v, want none", f)
	}

	// max_failures+1 wrong codes, each after the back-off of the one before, lock sign-in.
	c = e.browser()
	p = c.get("/portal/signin")
	max := e.srv.cfg.Enroll.MaxFailures
	for i := range max + 1 {
		e.clock.add(time.Hour)
		wrong(fmt.Sprintf("wrong code %d after a wait", i+1))
	}
	e.clock.add(24 * time.Hour)
	if f := e.signInFailures("ann"); f.Count != max {
		t.Errorf("sign-in record after %d wrong codes = %+v, want the count %d (the last was refused by the lock)", max+1, f, max)
	}
	if r := signInCode(c, p, e.code(secret, 0)); r.status != 403 {
		t.Errorf("right code with sign-in locked = %d at %s, want 403", r.status, r.url)
	}
	if re := e.signInRefusal("ann", e.code(secret, 0)); re.Kind != refusal.TooMany || re.RetryAfter != 0 ||
		!strings.Contains(re.Message, "signing in to the portal with a code is locked") {
		t.Errorf("SignIn(right code, locked) = %v (retry after %v), want the lock", re, re.RetryAfter)
	}
	// Nothing of it reached the nodes: the record they read is as it was, logins are free.
	if after, has := e.failuresRecord("ann"); has != had || after != before {
		t.Errorf("failure record at the nodes %+v (present %v), want %+v (present %v) as before the sign-ins", after, has, before, had)
	}
	e.loginsUnlocked("ann")
	// A proof of the CLI is no sign-in: it goes through.
	if st, body := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "laptop", "proof": e.code(secret, 0)}); st != 200 {
		t.Errorf("a node's enrollment with a right proof while portal sign-in is locked = %d %v, want 200", st, body)
	}
	// The mailed code is still mailed (the lock is of typed codes, not of the mail).
	d := e.browser()
	e.mailedCode(d, "ann", "ann@example.org")

	var un registryapi.Unlocked
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/unlock", nil, &un)
	if !un.Changed || un.SignInFailures != max || un.Failures != 0 {
		t.Errorf("unlock = %+v, want changed, %d sign-in failures, 0 failures", un, max)
	}
	if f := e.signInFailures("ann"); f != (token.Failures{}) {
		t.Errorf("sign-in record after the unlock = %+v, want none", f)
	}
	e.clock.add(30 * time.Second)
	if r := signInCode(c, p, e.code(secret, 0)); r.url != "/portal/tokens" {
		t.Errorf("right code after the unlock = %d at %s, want signed in", r.status, r.url)
	}
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/unlock", nil, &un)
	if un.Changed {
		t.Errorf("unlock of a user not locked = %+v, want unchanged", un)
	}
}

// TestPortalSignInLoginLock: a user whose logins are locked (wrong codes reported by nodes) is
// refused sign-in by code at the portal, and the refusals count nowhere; the unlock ends both.
func TestPortalSignInLoginLock(t *testing.T) {
	t.Parallel()
	e, secret := newSignInEnv(t)
	max := e.srv.cfg.Enroll.MaxFailures
	t0 := e.clock.now()
	for i := range max {
		if st, _ := e.logins(e.cred, failEv("ann", t0.Add(time.Duration(i)*time.Second))); st != 200 {
			t.Fatalf("login report = %d", st)
		}
	}
	if f, _ := e.failuresRecord("ann"); f.Count != max {
		t.Fatalf("failure record at the nodes %+v, want the count %d", f, max)
	}
	e.clock.add(24 * time.Hour)
	c := e.browser()
	p := c.get("/portal/signin")
	if r := signInCode(c, p, e.code(secret, 0)); r.status != 403 {
		t.Errorf("right code with logins locked = %d at %s, want 403", r.status, r.url)
	}
	if re := e.signInRefusal("ann", e.code(secret, 0)); re.Kind != refusal.TooMany || re.RetryAfter != 0 ||
		!strings.Contains(re.Message, "ask your administrators to unlock you") {
		t.Errorf("SignIn(right code, logins locked) = %v, want the lock", re)
	}
	if f := e.signInFailures("ann"); f != (token.Failures{}) {
		t.Errorf("sign-in record = %+v, want none (a refusal for the lock counts nowhere)", f)
	}
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/unlock", nil, nil)
	e.loginsUnlocked("ann")
	if r := signInCode(c, p, e.code(secret, 0)); r.url != "/portal/tokens" {
		t.Errorf("right code after the unlock = %d at %s, want signed in", r.status, r.url)
	}
}
