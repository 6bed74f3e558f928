package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// logins posts a login report as the node of cred and returns the status and the results.
func (e *enrollEnv) logins(cred string, events ...token.LoginEvent) (int, []registryapi.LoginResult) {
	e.t.Helper()
	var out registryapi.LoginAnswer
	st := e.do("POST", registryapi.PathSyncLogins, cred, registryapi.LoginReport{Events: events}, &out)
	return st, out.Results
}

func claimEv(user, id string, step uint64, at time.Time) token.LoginEvent {
	return token.LoginEvent{Kind: token.EventClaim, User: user, Token: id, Step: step, At: at}
}

func failEv(user string, at time.Time) token.LoginEvent {
	return token.LoginEvent{Kind: token.EventFailure, User: user, At: at}
}

// failuresRecord is the user's u/USER/failures record as nodes of scope alpha receive it.
func (e *enrollEnv) failuresRecord(user string) (token.SharedFailures, bool) {
	e.t.Helper()
	_, recs, _ := e.snapshot(e.cred)
	raw, ok := recs[syncframe.FailuresKey(user)]
	var f token.SharedFailures
	if ok {
		if err := json.Unmarshal(raw, &f); err != nil {
			e.t.Fatal(err)
		}
	}
	return f, ok
}

// TestLoginClaims: a step is granted once across nodes, again to the node that holds it, never
// below; users unknown or out of scope change nothing; an offline claim that lost is audited as
// a possible replay; the claims are the proofs' steps, so a code claimed at a login is no proof.
func TestLoginClaims(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	n3 := e.addNode("n3", "alpha")
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "bob", "scopes": []string{"beta"}}, nil)
	tok := e.addToken("ann")
	now := e.clock.now()
	step := totp.Step(now, 30)

	tests := []struct {
		name  string
		cred  string
		ev    token.LoginEvent
		want  registryapi.LoginResult
		wantB string // By, when refused
	}{
		{"first claim", e.cred, claimEv("ann", tok.ID, step, now), registryapi.LoginResult{Claimed: true}, ""},
		{"the same node again", e.cred, claimEv("ann", tok.ID, step, now), registryapi.LoginResult{Claimed: true}, ""},
		{"another node, same step", n3, claimEv("ann", tok.ID, step, now), registryapi.LoginResult{}, "node:n1"},
		{"an earlier step", n3, claimEv("ann", tok.ID, step-1, now), registryapi.LoginResult{}, "node:n1"},
		{"the next step", n3, claimEv("ann", tok.ID, step+1, now), registryapi.LoginResult{Claimed: true}, ""},
		{"a backup code", n3, claimEv("ann", token.ClaimID("c1"), 1, now), registryapi.LoginResult{Claimed: true}, ""},
		{"the backup code again elsewhere", e.cred, claimEv("ann", token.ClaimID("c1"), 1, now), registryapi.LoginResult{}, "node:n3"},
		{"unknown user", e.cred, claimEv("nobody", "t1", step, now), registryapi.LoginResult{Unknown: true}, ""},
		{"user of another scope", e.cred, claimEv("bob", "t1", step, now), registryapi.LoginResult{Unknown: true}, ""},
	}
	for _, tt := range tests {
		st, rs := e.logins(tt.cred, tt.ev)
		if st != 200 || len(rs) != 1 {
			t.Fatalf("%s: POST logins = %d %v", tt.name, st, rs)
		}
		if rs[0].Claimed != tt.want.Claimed || rs[0].Unknown != tt.want.Unknown || rs[0].By != tt.wantB {
			t.Errorf("%s: result %+v, want claimed %v unknown %v by %q", tt.name, rs[0], tt.want.Claimed, tt.want.Unknown, tt.wantB)
		}
	}

	// An offline claim that lost: a possible replay, in the audit log (whose chain holds).
	var before []AuditRecord
	e.mustAdmin(200, "GET", "/v1/admin/audit?limit=10000", nil, &before)
	off := claimEv("ann", tok.ID, step+1, now)
	off.Offline = true
	if st, rs := e.logins(e.cred, off); st != 200 || rs[0].Claimed || rs[0].By != "node:n3" {
		t.Fatalf("offline claim of a step n3 holds = %d %+v, want refused, by node:n3", st, rs)
	}
	var after []AuditRecord
	e.mustAdmin(200, "GET", fmt.Sprintf("/v1/admin/audit?after=%d", len(before)), nil, &after)
	if len(after) != 1 || after[0].Action != "login.possible_replay" || after[0].Actor != "node:n1" ||
		!strings.Contains(after[0].Reason, "granted to node:n3") {
		t.Errorf("audit after the lost offline claim: %+v, want one login.possible_replay by node:n1", after)
	}
	var v registryapi.AuditCheck
	e.mustAdmin(200, "GET", "/v1/admin/audit/verify", nil, &v)
	if !v.OK {
		t.Errorf("audit chain: %+v", v)
	}

	// A code a login claimed is no proof at the registry, and a proved code is refused at a login.
	e.clock.add(90 * time.Second)
	now = e.clock.now()
	if st, rs := e.logins(e.cred, claimEv("ann", tok.ID, totp.Step(now, 30), now)); st != 200 || !rs[0].Claimed {
		t.Fatalf("claim = %d %+v", st, rs)
	}
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "laptop", "proof": e.code(tok.Secret, 0)})
	if st == 200 {
		t.Errorf("begin with a code a login claimed = %d %v, want a refusal", st, b)
	}
	if st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "laptop", "proof": e.code(tok.Secret, 1)}); st != 200 {
		t.Fatalf("begin with the next code = %d %v, want 200", st, b)
	}
	if st, rs := e.logins(n3, claimEv("ann", tok.ID, totp.Step(now, 30)+1, now)); st != 200 || rs[0].Claimed || rs[0].By != "registry" {
		t.Errorf("claim of the step proved at the registry = %d %+v, want refused, by registry", st, rs)
	}
}

// TestLoginFailureBudget: wrong codes from several nodes count in one record that nodes receive;
// failed proofs count in it too; a failure from before a success does not count; a granted claim
// and an administrator's unlock clear it.
func TestLoginFailureBudget(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	n3 := e.addNode("n3", "alpha")
	tok := e.addToken("ann")
	watcher := e.follow(n3)
	t0 := e.clock.now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	if st, rs := e.logins(e.cred, failEv("ann", at(1)), failEv("ann", at(2))); st != 200 || rs[1].Failures != 2 {
		t.Fatalf("two failures from n1 = %d %+v, want the count 2", st, rs)
	}
	if st, rs := e.logins(n3, failEv("ann", at(3))); st != 200 || rs[0].Failures != 3 {
		t.Fatalf("a failure from n3 = %d %+v, want the count 3", st, rs)
	}
	b := watcher.nextBatch()
	if len(b.Frames) != 1 || b.Frames[0].Key != syncframe.FailuresKey("ann") || b.Frames[0].Type != syncframe.Put {
		t.Errorf("the watching node got %+v, want a put of %s", b.Frames, syncframe.FailuresKey("ann"))
	}
	if f, ok := e.failuresRecord("ann"); !ok || f.Count != 3 || !f.Last.Equal(at(3)) {
		t.Errorf("failures record %+v (present %v), want count 3, last t0+3s", f, ok)
	}
	// A failed proof at the registry counts in the same record.
	if st, _ := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "x", "proof": "000000"}); st == 200 {
		t.Fatal("begin with a wrong proof succeeded")
	}
	if f, _ := e.failuresRecord("ann"); f.Count != 4 {
		t.Errorf("after a failed proof: count %d, want 4", f.Count)
	}
	// A granted claim clears; a failure from before it does not count again.
	step := totp.Step(at(10), 30)
	if st, rs := e.logins(e.cred, claimEv("ann", tok.ID, step, at(10))); st != 200 || !rs[0].Claimed {
		t.Fatalf("claim = %d %+v", st, rs)
	}
	f, _ := e.failuresRecord("ann")
	if f.Count != 0 || !f.Cleared.Equal(at(10)) {
		t.Errorf("after a granted claim: %+v, want count 0, cleared t0+10s", f)
	}
	if _, rs := e.logins(n3, failEv("ann", at(5))); rs[0].Failures != 0 {
		t.Errorf("a failure from before the success counted: %+v", rs)
	}
	// A claim with nothing to clear changes no record: a login is not a sync change.
	_, _, d := e.snapshot(e.cred)
	if _, rs := e.logins(e.cred, claimEv("ann", tok.ID, step+1, at(40))); !rs[0].Claimed {
		t.Fatalf("claim of the next step: %+v", rs)
	}
	if _, recs, d2 := e.snapshot(e.cred); d2.String() != d.String() || recs[syncframe.FailuresKey("ann")] == nil {
		t.Error("a claim with no failures to clear changed the records (the cleared record must stay)")
	}
	// Enough failures lock proofs (max_failures 10), and the unlock clears them for every node.
	for i := range 12 {
		e.logins(n3, failEv("ann", at(100+i)))
	}
	if st, _ := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "x", "proof": e.code(tok.Secret, 1)}); st == 200 {
		t.Error("a proof went through with 12 wrong login codes counted")
	}
	var u registryapi.Unlocked
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/unlock", nil, &u)
	if u.Failures < 12 {
		t.Errorf("unlock cleared %d failures, want at least 12", u.Failures)
	}
	if f, _ := e.failuresRecord("ann"); f.Count != 0 || f.Cleared.IsZero() {
		t.Errorf("after the unlock: %+v, want count 0 and a clear time", f)
	}
}

// TestLoginReportsRefused: malformed reports are refused whole with 400, and a caller that is
// not a node with 401.
func TestLoginReportsRefused(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	now := e.clock.now()
	many := make([]token.LoginEvent, registryapi.MaxLoginEvents+1)
	for i := range many {
		many[i] = failEv("ann", now)
	}
	tests := []struct {
		name   string
		cred   string
		events []token.LoginEvent
		want   int
	}{
		{"not a node", "", []token.LoginEvent{failEv("ann", now)}, 401},
		{"no events", e.cred, nil, 400},
		{"too many", e.cred, many, 400},
		{"unknown kind", e.cred, []token.LoginEvent{{Kind: "guess", User: "ann", At: now}}, 400},
		{"claim without a step", e.cred, []token.LoginEvent{claimEv("ann", "t1", 0, now)}, 400},
		{"claim without a token", e.cred, []token.LoginEvent{claimEv("ann", "", 5, now)}, 400},
		{"failure naming a token", e.cred, []token.LoginEvent{{Kind: token.EventFailure, User: "ann", Token: "t1", At: now}}, 400},
		{"bad user name", e.cred, []token.LoginEvent{failEv("a/b", now)}, 400},
		{"no time", e.cred, []token.LoginEvent{failEv("ann", time.Time{})}, 400},
	}
	for _, tt := range tests {
		rev := e.store.Rev()
		if st, _ := e.logins(tt.cred, tt.events...); st != tt.want {
			t.Errorf("%s: POST logins = %d, want %d", tt.name, st, tt.want)
		}
		if e.store.Rev() != rev {
			t.Errorf("%s: a refused report changed the store", tt.name)
		}
	}
}
