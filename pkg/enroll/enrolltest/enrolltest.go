// Package enrolltest runs one table of enrollment cases against an enroll.Store, so that every
// authority (the registry's kv store, a standalone node's files) is shown to apply the same
// rules. Each authority's tests call Run with a Harness on its real storage.
package enrolltest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Env is one fresh authority with one user who has no token yet.
type Env struct {
	Service *enroll.Service
	User    string
	// Advance moves the clock the service reads.
	Advance func(time.Duration)
	// Reset is an administrator's reset of the user (tokens, backup codes, enrollment state).
	Reset func()
}

// Harness makes fresh environments.
type Harness func(t *testing.T) Env

var ctx = context.Background()

// Run runs every case, each on a fresh Env.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"first token", firstToken},
		{"further tokens need a proof", proofs},
		{"skewed finishing code is burned and counted", skew},
		{"failed proofs lock", lockout},
		{"pending tokens expire", expiry},
		{"one pending first token", onePendingFirst},
		{"max tokens", maxTokens},
		{"removed last token needs a reset", removedLast},
		{"backup codes", backupCodes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, &env{Env: h(t), t: t})
		})
	}
}

type env struct {
	Env
	t *testing.T
}

// key is a begun token: its id and key.
type key struct {
	id string
	k  totp.Key
}

func (e *env) begin(name, proof string) key {
	e.t.Helper()
	en, err := e.Service.Begin(ctx, e.User, name, proof)
	if err != nil {
		e.t.Fatalf("Begin(%q): %v", name, err)
	}
	k, err := totp.ParseURI(en.URI)
	if err != nil {
		e.t.Fatalf("Begin returned an unusable URI: %v", err)
	}
	return key{en.ID, k}
}

// code is k's code d steps from the service's now.
func (e *env) code(k key, d int) string {
	return totp.Code(k.k.Secret, k.k.Params, uint64(int64(totp.Step(e.Service.Now(), k.k.Params.Period))+int64(d)))
}

func (e *env) finish(k key, code string) enroll.Finished {
	e.t.Helper()
	f, err := e.Service.Finish(ctx, e.User, k.id, code)
	if err != nil {
		e.t.Fatalf("Finish(%s): %v", k.id, err)
	}
	return f
}

// enroll begins and finishes a token; it returns the key and the backup codes. The clock then
// moves to the next step, so that the next code is a new one.
func (e *env) enroll(name, proof string) (key, []string) {
	e.t.Helper()
	k := e.begin(name, proof)
	f := e.finish(k, e.code(k, 0))
	if f.Status != registryapi.StatusActive {
		e.t.Fatalf("Finish(current code) = %+v, want active", f.FinishResult)
	}
	e.Advance(30 * time.Second)
	return k, f.BackupCodes
}

// refused checks that err is a refusal of kind whose sentence holds text.
func refused(t *testing.T, what string, err error, kind refusal.Kind, text string) {
	t.Helper()
	var re *refusal.Error
	if !errors.As(err, &re) || re.Kind != kind || !strings.Contains(re.Message, text) {
		t.Errorf("%s = %v; want a refusal (kind %v) saying %q", what, err, kind, text)
	}
}

func firstToken(t *testing.T, e *env) {
	k := e.begin("phone", "")
	if f := e.finish(k, "12"); f.Status != registryapi.StatusWrongCode {
		t.Errorf("Finish(not a code) = %s, want wrong_code", f.Status)
	}
	other := key{k: totp.Key{Secret: []byte("12345678901234567890"), Params: k.k.Params}}
	if f := e.finish(k, e.code(other, 0)); f.Status != registryapi.StatusWrongCode {
		t.Errorf("Finish(another token's code) = %s, want wrong_code", f.Status)
	}
	f := e.finish(k, e.code(k, 0))
	if f.Status != registryapi.StatusActive || len(f.BackupCodes) == 0 || f.Token.ID != k.id {
		t.Fatalf("Finish(current code) = %+v, want active with backup codes", f)
	}
	if again := e.finish(k, e.code(k, 0)); again.Status != registryapi.StatusActive || again.BackupCodes != nil {
		t.Errorf("Finish again = %+v, want active (already), no new codes", again.FinishResult)
	}
	_, err := e.Service.Finish(ctx, e.User, "0123456789abcdef", e.code(k, 0))
	refused(t, "Finish(unknown id)", err, refusal.NotFound, "no pending enrollment")
}

func proofs(t *testing.T, e *env) {
	k, _ := e.enroll("phone", "")
	_, err := e.Service.Begin(ctx, e.User, "second", "")
	refused(t, "Begin(second, no proof)", err, refusal.Refused, "a proof is required")
	_, err = e.Service.Begin(ctx, e.User, "second", "000000")
	refused(t, "Begin(second, wrong code)", err, refusal.Refused, "not accepted")
	proof := e.code(k, 0)
	e.begin("second", proof)
	_, err = e.Service.Begin(ctx, e.User, "third", proof)
	refused(t, "Begin(third, the same code)", err, refusal.Refused, "already used")
	// The proof's step is burned for logins too: a later proof must be a later code.
	e.Advance(30 * time.Second)
	e.begin("third", e.code(k, 0))
}

func skew(t *testing.T, e *env) {
	k := e.begin("phone", "")
	early := e.code(k, 2)
	f := e.finish(k, early)
	if f.Status != registryapi.StatusClockSkew || f.SkewS != 60 {
		t.Fatalf("Finish(now+2 steps) = %+v, want clock_skew 60", f.FinishResult)
	}
	e.Advance(60 * time.Second) // the early code's own step
	if f := e.finish(k, early); f.Status != registryapi.StatusWrongCode {
		t.Errorf("Finish(the early code in its step) = %s, want wrong_code (burned)", f.Status)
	}
	e.Advance(30 * time.Second)
	if f := e.finish(k, e.code(k, 0)); f.Status != registryapi.StatusActive {
		t.Errorf("Finish(a later code) = %s, want active", f.Status)
	}
}

func lockout(t *testing.T, e *env) {
	k, _ := e.enroll("phone", "")
	for range e.Service.Rules.Limits.LockoutAfter {
		_, err := e.Service.Begin(ctx, e.User, "second", "000000")
		var re *refusal.Error
		if errors.As(err, &re) && re.Kind == refusal.TooMany && re.RetryAfter > 0 {
			e.Advance(re.RetryAfter + time.Second) // wait out each back-off, then fail again
			_, _ = e.Service.Begin(ctx, e.User, "second", "000000")
		}
	}
	e.Advance(24 * time.Hour)
	_, err := e.Service.Begin(ctx, e.User, "second", e.code(k, 0))
	refused(t, "Begin(right code, after the limit and a day)", err, refusal.TooMany, "")
	e.Reset()
	e.enroll("phone", "")
}

func expiry(t *testing.T, e *env) {
	k := e.begin("phone", "")
	e.Advance(enroll.PendingTTL)
	if f := e.finish(k, e.code(k, 0)); f.Status != registryapi.StatusExpired {
		t.Errorf("Finish after the TTL = %s, want expired", f.Status)
	}
	_, err := e.Service.Finish(ctx, e.User, k.id, e.code(k, 0))
	refused(t, "Finish after the expiry was answered", err, refusal.NotFound, "no pending enrollment")
	k = e.begin("phone", "")
	e.Advance(enroll.PendingTTL)
	if n, err := e.Service.Sweep(ctx, e.User); n != 1 || err != nil {
		t.Errorf("Sweep = %d, %v; want 1", n, err)
	}
}

func onePendingFirst(t *testing.T, e *env) {
	a := e.begin("a", "")
	b := e.begin("b", "")
	_, err := e.Service.Finish(ctx, e.User, a.id, e.code(a, 0))
	refused(t, "Finish(a first enrollment replaced by another)", err, refusal.NotFound, "no pending enrollment")
	if f := e.finish(b, e.code(b, 0)); f.Status != registryapi.StatusActive {
		t.Errorf("Finish(the newer first enrollment) = %s, want active", f.Status)
	}
}

func maxTokens(t *testing.T, e *env) {
	k, _ := e.enroll("phone", "")
	for i := 1; i < e.Service.Rules.MaxTokens; i++ {
		e.begin("more", e.code(k, 0))
		e.Advance(30 * time.Second)
	}
	_, err := e.Service.Begin(ctx, e.User, "one too many", e.code(k, 0))
	refused(t, "Begin(beyond max_tokens)", err, refusal.Conflict, "the most this site allows")
}

func removedLast(t *testing.T, e *env) {
	k, _ := e.enroll("phone", "")
	pending := e.begin("pending", e.code(k, 0))
	if _, err := e.Service.Remove(ctx, e.User, pending.id, ""); err != nil {
		t.Errorf("Remove(pending, no proof) = %v, want nil", err)
	}
	e.Advance(30 * time.Second)
	if _, err := e.Service.Remove(ctx, e.User, k.id, ""); err == nil {
		t.Error("Remove(active, no proof) succeeded")
	}
	if r, err := e.Service.Remove(ctx, e.User, k.id, e.code(k, 0)); err != nil || r.Pending || r.Name != "phone" {
		t.Fatalf("Remove(active, with its code) = %+v, %v", r, err)
	}
	_, err := e.Service.Begin(ctx, e.User, "new", "")
	refused(t, "Begin after the last token was removed", err, refusal.Conflict, "reset your second factor")
	e.Reset()
	e.enroll("new", "")
}

func backupCodes(t *testing.T, e *env) {
	_, codes := e.enroll("phone", "")
	fresh, err := e.Service.BackupCodes(ctx, e.User, codes[0])
	if err != nil || len(fresh) != len(codes) {
		t.Fatalf("BackupCodes(a backup code) = %d codes, %v", len(fresh), err)
	}
	_, err = e.Service.Begin(ctx, e.User, "second", codes[1])
	refused(t, "Begin(a backup code of the replaced set)", err, refusal.Refused, "not accepted")
	e.begin("second", fresh[0])
	_, err = e.Service.Begin(ctx, e.User, "third", fresh[0])
	refused(t, "Begin(the same backup code again)", err, refusal.Refused, "not accepted")
}
