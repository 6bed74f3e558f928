package nodesync

import (
	"context"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// TestOutboxReported: what logins left in state.db's outbox goes to the registry once it is
// connected: kept after a 503, dropped after a 400 (it would never be taken), deleted once taken;
// a lost offline claim counts as a possible replay. A claim while connected asks the registry.
func TestOutboxReported(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base.clone())}}
	f.loginStatus = []int{503, 400, 200}
	e := newEnv(t, f)
	state := store.NewState(store.Options{Dir: e.dir, Timeout: time.Second})
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	queue := func(evs ...token.LoginEvent) {
		t.Helper()
		if err := state.Update(func(x *store.StateTx) error {
			for _, ev := range evs {
				if err := x.AddEvent(ev); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	queue(token.LoginEvent{Kind: token.EventFailure, User: "alice", At: at})
	o := e.options()
	o.UsedEvery = 10 * time.Millisecond
	s := e.start(t, o)

	f.waitEvent(t, "logins status=503 n=1")
	f.waitEvent(t, "logins status=400 n=1") // kept after the 503, dropped after this
	queue(token.LoginEvent{Kind: token.EventClaim, User: "alice", Token: "t1", Step: 9, At: at, Offline: true},
		token.LoginEvent{Kind: token.EventFailure, User: "alice", At: at})
	s.Claims().Kick()
	f.waitEvent(t, "logins n=2")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n := -1
		_ = state.View(func(x *store.StateTx) error { n = x.OutboxLen(); return nil })
		if n == 0 && s.Metrics().PossibleReplays() == 1 {
			break
		}
	}
	var left int
	_ = state.View(func(x *store.StateTx) error { left = x.OutboxLen(); return nil })
	f.mu.Lock()
	taken := f.logins
	f.mu.Unlock()
	if left != 0 || len(taken) != 1 || len(taken[0].Events) != 2 || taken[0].Events[0].Step != 9 {
		t.Errorf("outbox left %d, reports taken %+v; want empty and one report of the claim and the failure", left, taken)
	}
	if got := s.Metrics().PossibleReplays(); got != 1 {
		t.Errorf("possible replays = %d, want 1 (the offline claim the registry had given to node:other)", got)
	}

	// A live claim: asked, and refused here (the fake registry refuses every claim).
	ok, holder, err := s.Claims().Claim(context.Background(), token.LoginEvent{Kind: token.EventClaim, User: "alice", Token: "t1", Step: 10, At: at})
	if err != nil || ok || holder.Node != "node:other" || s.Metrics().Claims(ClaimRefused) != 1 {
		t.Errorf("Claim = %v %+v %v (refused %d), want refused by node:other", ok, holder, err, s.Metrics().Claims(ClaimRefused))
	}
}
