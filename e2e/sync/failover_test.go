//go:build linux

package sync

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// followerPair starts two registry replicas on one etcd cluster (bookmarks every second) and a
// node configured with both, A first, with a user whose token logs in.
func followerPair(t *testing.T) (a, b *registry, n *node, user string) {
	t.Helper()
	a = startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Etcd: newEtcd(t), BookmarkInterval: time.Second})
	b = a.replica()
	n = newNode(t, a, nodeOptions{Replicas: []*registry{b}})
	user = pamtest.AddUser(t, userPrefix)
	a.addUser(user)
	step := nextStep(t)
	tok, _ := a.addToken(user, "phone")
	n.waitRev(a.rev(), 10*time.Second)
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login before the fail-over: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
	if got := n.metric("pam_totp_sync_replica_info", fmt.Sprintf("{url=%q}", a.url)); got != 1 {
		t.Fatalf("replica_info{url=A} = %v, want 1: the node starts with the first replica listed", got)
	}
	return a, b, n, user
}

// checkFailover waits until the node follows b, then checks that it did not resync, that a token
// written through b logs in on it, and that `totp-syncd status` names b. It returns how long the
// move took from start.
func checkFailover(t *testing.T, b *registry, n *node, user string, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	resyncs := n.metricSum("pam_totp_sync_resyncs_total")
	eventually(t, within, "the node follows replica B", func() (bool, error) {
		return n.metric("pam_totp_sync_replica_info", fmt.Sprintf("{url=%q}", b.url)) == 1 &&
			n.metric("pam_totp_sync_connected", "") == 1, nil
	})
	took := time.Since(start)
	step := nextStep(t)
	tok, _ := b.addToken(user, "laptop")
	rev := b.rev()
	n.waitRev(rev, 10*time.Second)
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login with a token written through B after the fail-over: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
	if got := n.metricSum("pam_totp_sync_resyncs_total"); got != resyncs {
		t.Errorf("resyncs %v after the fail-over, %v before: want none (resumed from the applied revision)", got, resyncs)
	}
	if got := n.metric("pam_totp_sync_failovers_total", ""); got != 1 {
		t.Errorf("failovers_total = %v, want 1", got)
	}
	st, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	if st["source"] != b.url || st["source_since"] == "" || st["epoch"] == "" {
		t.Errorf("status: source %v since %v, epoch %v; want B %s, a time and the store's epoch", st["source"], st["source_since"], st["epoch"], b.url)
	}
	return took
}

// TestFailoverKilledReplica: kill -9 the replica a node follows; the node moves to the other
// replica at once, resumes from its revision, and a token written through it logs in.
func TestFailoverKilledReplica(t *testing.T) {
	needRoot(t)
	a, b, n, user := followerPair(t)
	start := time.Now()
	a.proc.kill()
	took := checkFailover(t, b, n, user, start, 2*time.Second)
	t.Logf("node moved to replica B %s after replica A was killed", took.Round(time.Millisecond))
}

// TestFailoverStalledReplica: the replica a node follows stops answering without closing the
// connection (SIGSTOP); the node gives up on its stream after three bookmark intervals and moves.
func TestFailoverStalledReplica(t *testing.T) {
	needRoot(t)
	a, b, n, user := followerPair(t)
	start := time.Now()
	a.proc.signal(syscall.SIGSTOP)
	t.Cleanup(func() { a.proc.signal(syscall.SIGCONT) })
	took := checkFailover(t, b, n, user, start, 8*time.Second)
	t.Logf("node moved to replica B %s after replica A stalled (bookmark interval 1 s)", took.Round(time.Millisecond))
	if !n.logHas("stream idle") {
		t.Errorf("the node's log does not say the stream stalled")
	}
}
