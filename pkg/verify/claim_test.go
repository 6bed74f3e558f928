package verify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// claimer is a scripted registry: answer decides each claim; it records claims and kicks.
type claimer struct {
	mu     sync.Mutex
	answer func(ctx context.Context, e token.LoginEvent) (bool, token.Claim, error)
	claims []token.LoginEvent
	kicks  int
}

func (c *claimer) Claim(ctx context.Context, e token.LoginEvent) (bool, token.Claim, error) {
	c.mu.Lock()
	c.claims = append(c.claims, e)
	c.mu.Unlock()
	return c.answer(ctx, e)
}

func (c *claimer) Kick() { c.mu.Lock(); c.kicks++; c.mu.Unlock() }

func grant(context.Context, token.LoginEvent) (bool, token.Claim, error) {
	return true, token.Claim{}, nil
}

func refuse(_ context.Context, e token.LoginEvent) (bool, token.Claim, error) {
	return false, token.Claim{Step: e.Step, Node: "node:other", At: t0}, nil
}

func unreachable(context.Context, token.LoginEvent) (bool, token.Claim, error) {
	return false, token.Claim{}, errors.New("connection refused")
}

// hang answers only when the verifier's bound ends the wait.
func hang(ctx context.Context, _ token.LoginEvent) (bool, token.Claim, error) {
	<-ctx.Done()
	return false, token.Claim{}, ctx.Err()
}

const registryConf = `
[sync]
registry = "https://registry.example.org:8443"
claim_timeout = "50ms"
`

func (f *fixture) outbox() []token.LoginEvent {
	f.t.Helper()
	var out []token.LoginEvent
	if err := store.NewState(f.opts()).View(func(x *store.StateTx) error {
		for _, e := range x.Outbox(100) {
			out = append(out, e.Event)
		}
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// TestClaims: on a node with a registry, what the claim says decides an accepting answer, and
// what cannot be claimed follows offline_claims.
func TestClaims(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		conf        string
		answer      func(context.Context, token.LoginEvent) (bool, token.Claim, error)
		helper      bool // no Claimer: the helper deciding
		want        protocol.Verdict
		wantOutcome string
		wantSaid    string
		wantOutbox  int // offline claims queued
		thenGranted protocol.Verdict
	}{
		{"granted", "", grant, false, protocol.Success, "outcome=success", "", 0, protocol.AuthErr},
		{"refused: a replay elsewhere, burned here", "", refuse, false, protocol.AuthErr, "outcome=replay", "already been used", 0, protocol.AuthErr},
		{"unreachable, local", "", unreachable, false, protocol.Success, "outcome=success", "", 1, protocol.AuthErr},
		{"no answer within claim_timeout, local", "", hang, false, protocol.Success, "outcome=success", "", 1, protocol.AuthErr},
		{"unreachable, deny: not burned", `offline_claims = "deny"`, unreachable, false, protocol.AuthErr, "outcome=claim_unavailable", "cannot be confirmed", 0, protocol.Success},
		{"helper, local", "", nil, true, protocol.Success, "outcome=success", "", 1, protocol.AuthErr},
		{"helper, deny", `offline_claims = "deny"`, nil, true, protocol.AuthErr, "outcome=claim_unavailable", "cannot be confirmed", 0, protocol.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, registryConf+tt.conf)
			f.addToken("alice", "t1", token.Active, totp.DefaultParams, seed)
			c := &claimer{answer: tt.answer}
			if !tt.helper {
				f.v.Claims = c
			}
			got, cv := f.auth(req("alice"), code(step0))
			if got != tt.want || !strings.Contains(f.log.String(), tt.wantOutcome) || !strings.Contains(cv.said(), tt.wantSaid) {
				t.Fatalf("Authenticate = %v, said %q; want %v, %q, %q (log: %s)", got, cv.said(), tt.want, tt.wantOutcome, tt.wantSaid, f.log)
			}
			if !tt.helper && (len(c.claims) != 1 || c.claims[0].Token != "t1" || c.claims[0].Step != step0 || c.claims[0].User != "alice") {
				t.Errorf("claims made: %+v, want one of (alice, t1, %d)", c.claims, step0)
			}
			if ob := f.outbox(); len(ob) != tt.wantOutbox || len(ob) == 1 && (!ob[0].Offline || ob[0].Kind != token.EventClaim || ob[0].Step != step0) {
				t.Errorf("outbox %+v, want %d offline claim(s)", ob, tt.wantOutbox)
			}
			if tt.wantOutbox > 0 && !strings.Contains(f.log.String(), "registry claim not made") {
				t.Errorf("an acceptance without the registry was not logged loudly: %s", f.log)
			}
			if n := f.failures("alice").Count; n != 0 {
				t.Errorf("failures = %d, want none counted", n)
			}
			// The same code again, now with a registry that grants it: only a step nobody
			// accepted yet goes through.
			f.v.Claims = &claimer{answer: grant}
			if got, _ := f.auth(req("alice"), code(step0)); got != tt.thenGranted {
				t.Errorf("the same code again, the registry granting = %v, want %v", got, tt.thenGranted)
			}
		})
	}
}

// TestClaimsFailuresAndBackup: wrong codes go to the outbox and kick the reporter; a backup code
// is claimed as backup:ID at step 1; the registry's failure record locks a user the node has
// never seen fail; a node without a registry claims nothing.
func TestClaimsFailuresAndBackup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, registryConf)
	f.addToken("alice", "t1", token.Active, totp.DefaultParams, seed)
	f.addBackup("alice", "12345678")
	c := &claimer{answer: grant}
	f.v.Claims = c
	if got, _ := f.auth(req("alice"), "000000"); got != protocol.AuthErr {
		t.Fatalf("wrong code = %v", got)
	}
	if ob := f.outbox(); len(ob) != 1 || ob[0].Kind != token.EventFailure || ob[0].User != "alice" || c.kicks != 1 {
		t.Errorf("after a wrong code: outbox %+v, kicks %d; want one failure and a kick", ob, c.kicks)
	}
	if got, _ := f.auth(req("alice"), "1234-5678"); got != protocol.Success {
		t.Fatalf("backup code = %v (log %s)", got, f.log)
	}
	if last := c.claims[len(c.claims)-1]; last.Token != "backup:"+backupID(t, f, "alice") || last.Step != 1 {
		t.Errorf("backup code claimed as %+v, want backup:ID at step 1", last)
	}

	// The registry counted 25 failures elsewhere: locked on a synced node that saw none.
	n := newFixture(t, registryConf)
	n.v.Claims = &claimer{answer: grant}
	tok, _ := json.Marshal(token.Token{User: "carol", ID: "t1", Name: "t1", Algorithm: totp.SHA1, Digits: 6, Period: 30,
		Secret: seed, State: token.Active, Created: t0})
	rec, _ := json.Marshal(token.SharedFailures{User: "carol", Failures: token.Failures{Count: 25, Last: n.now}})
	const src = "https://registry.example.org:8443"
	if err := store.NewTokens(n.opts()).Update(func(x *store.TokensTx) error {
		m, err := x.Meta()
		if err != nil {
			return err
		}
		m.Revision, m.Source = 1, src
		return x.SetMeta(m)
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.NewTokens(n.opts()).Apply(2, []store.Change{{Key: syncframe.TokenKey("carol", "t1"), Value: tok},
		{Key: syncframe.FailuresKey("carol"), Value: rec}}, store.Origin{Source: src}, n.now); err != nil {
		t.Fatal(err)
	}
	got, cv := n.auth(req("carol"), code(step0+1))
	if got != protocol.MaxTries || len(cv.prompts) != 0 {
		t.Errorf("with 25 failures at the registry: %v after %d prompts, want MaxTries without a prompt (log %s)", got, len(cv.prompts), n.log)
	}

	// Standalone: no claim, no outbox.
	s := newFixture(t, "")
	s.addToken("bob", "t1", token.Active, totp.DefaultParams, seed)
	sc := &claimer{answer: refuse}
	s.v.Claims = sc
	if got, _ := s.auth(req("bob"), code(step0)); got != protocol.Success || len(sc.claims) != 0 {
		t.Errorf("standalone: %v with %d claims, want success and none", got, len(sc.claims))
	}
	if got, _ := s.auth(req("bob"), "000000"); got != protocol.AuthErr || len(s.outbox()) != 0 {
		t.Errorf("standalone wrong code: outbox %+v, want empty", s.outbox())
	}
}

func backupID(t *testing.T, f *fixture, user string) string {
	t.Helper()
	var id string
	if err := store.NewTokens(f.opts()).View(func(x *store.TokensTx) error {
		codes, err := x.BackupCodes(user)
		if len(codes) > 0 {
			id = codes[0].ID
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id
}
