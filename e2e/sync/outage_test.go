//go:build linux

package sync

import (
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
)

// TestRegistryKilled: with the registry killed (SIGKILL) logins go on on every node
// (offline_claims = "local": the same code on all three, as the registry cannot be asked);
// restarted, the nodes resume from their revision without a resync, report those claims, and the
// two nodes whose claim the registry had granted to another log a possible replay. A node killed
// across a compaction gets 410 when it comes back, resyncs from a snapshot, and ends with the
// others' digest.
func TestRegistryKilled(t *testing.T) {
	needRoot(t)
	r, nodes := cluster(t, regOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	tok, _ := r.addToken(user, "phone")
	rev := r.rev()
	for _, n := range nodes {
		n.waitRev(rev, 5*time.Second)
	}
	resyncs := make([]float64, len(nodes))
	for i, n := range nodes {
		resyncs[i] = n.metricSum("pam_totp_sync_resyncs_total")
		if resyncs[i] != 1 {
			t.Errorf("%s: pam_totp_sync_resyncs_total = %v after the first sync, want 1 (no_store)", n.name, resyncs[i])
		}
	}

	// kill -9: logins are served from each node's tokens.db.
	step := nextStep(t)
	r.proc.kill()
	results := make([]pamtest.Result, len(nodes))
	onAll(nodes, func(i int, n *node) { results[i] = n.login(user, code(tok, step)) })
	for i, res := range results {
		res.Want(t, nodes[i].name+" registry down", pamtest.Success, -1)
	}

	// Restarted: the nodes reconnect, watch from their revision, and take new changes.
	r.restart()
	user2 := pamtest.AddUser(t, userPrefix)
	r.addUser(user2)
	tok2, _ := r.addToken(user2, "phone")
	rev = r.rev()
	for _, n := range nodes {
		took := n.waitRev(rev, 40*time.Second) // the reconnect back-off may have grown to a few seconds
		t.Logf("%s: applied revision %d %v after the change at the restarted registry", n.name, rev, took.Round(time.Millisecond))
	}
	// The offline claims reach the registry: one granted, the two others are possible replays.
	eventually(t, 15*time.Second, "the offline claims are reported", func() (bool, error) {
		sum := 0.0
		for _, n := range nodes {
			sum += n.metric("pam_totp_sync_possible_replays_total", "")
		}
		return sum == 2, nil
	})
	step = nextStep(t)
	for i, n := range nodes { // one code per node: the cluster accepts each once
		results[i] = n.login(user2, code(tok2, step-1+uint64(i)))
	}
	for i, res := range results {
		res.Want(t, nodes[i].name+" after registry restart", pamtest.Success, -1)
		if got := nodes[i].metricSum("pam_totp_sync_resyncs_total"); got != resyncs[i] {
			t.Errorf("%s: pam_totp_sync_resyncs_total = %v after the registry restart, want %v (resume, no resync)",
				nodes[i].name, got, resyncs[i])
		}
	}

	// Compaction while node 0 is down: it comes back to a 410 and a resync.
	down := nodes[0]
	down.proc.kill()
	user3 := pamtest.AddUser(t, userPrefix)
	r.addUser(user3)
	r.addToken(user3, "phone")
	if _, err := r.admin.Compact(ctx(t), 1); err != nil {
		t.Fatalf("Compact(1): %v", err)
	}
	tok4, _ := r.addToken(user3, "laptop")
	disabled := "disabled"
	if _, err := r.admin.UpdateToken(ctx(t), user, tok.ID, adminclientTokenChange(&disabled)); err != nil {
		t.Fatalf("UpdateToken: %v", err)
	}
	down.start()
	rev = r.rev()
	for _, n := range nodes {
		n.waitRev(rev, 20*time.Second)
	}
	eventually(t, 5*time.Second, "the restarted node counts a compacted resync", func() (bool, error) {
		return down.resyncs(nodesync.ReasonCompacted) == 1, nil
	})
	d0, m0 := down.digest()
	for _, n := range nodes {
		d, m := n.digest()
		if !d.Matches(m.Count, m.Digest) {
			t.Errorf("%s: records give %d/%s, meta says %d/%s", n.name, d.Count(), d, m.Count, m.Digest)
		}
		if d.String() != d0.String() || d.Count() != d0.Count() || m.Revision != m0.Revision {
			t.Errorf("%s: revision %d, %d records, digest %s; %s (resynced): revision %d, %d records, digest %s",
				n.name, m.Revision, d.Count(), d, down.name, m0.Revision, d0.Count(), d0)
		}
	}
	if res := down.login(user3, code(tok4, step+1)); res.Code != pamtest.Success || res.Fatal != "" {
		res.Want(t, down.name+" token added after the compaction", pamtest.Success, -1)
	}
}
