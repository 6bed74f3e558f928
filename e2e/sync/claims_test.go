//go:build linux

package sync

import (
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// budgetRate makes the failure budget reachable in a test: 20 wrong codes lock a user, and no
// back-off outlasts the 3 s the test's clock moves between two wrong codes.
const budgetRate = `free_failures = 10
initial_backoff = "1s"
max_backoff = "2s"
lockout_after = 20`

// sharedFailures reads the user's failure record of the registry from the node's tokens.db.
func (n *node) sharedFailures(user string) token.SharedFailures {
	var f token.SharedFailures
	_ = n.tokens().View(func(x *store.TokensTx) error {
		var err error
		f, err = x.SharedFailures(user)
		return err
	})
	return f
}

// TestClaimsAcrossNodes: with a registry and three nodes, a code is accepted once on the whole
// cluster, wrong codes count against one budget, and an unreachable registry means what
// offline_claims says.
func TestClaimsAcrossNodes(t *testing.T) {
	needRoot(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	nodes := make([]*node, 3)
	for i := range nodes {
		// connect_ms at its most: a slow machine must not send a login to the helper, which
		// cannot claim (and would accept offline), while the test counts claims.
		nodes[i] = newNode(t, r, nodeOptions{RateLimit: budgetRate, ConnectMS: 5000})
	}
	strict := newNode(t, r, nodeOptions{RateLimit: budgetRate, ConnectMS: 5000, Sync: `offline_claims = "deny"`})
	all := append(append([]*node{}, nodes...), strict)
	rev := r.rev()
	for _, n := range all {
		n.waitRev(rev, 15*time.Second)
	}
	newUser := func() (string, token.Token) {
		user := pamtest.AddUser(t, userPrefix)
		r.addUser(user)
		tok, _ := r.addToken(user, "phone")
		rev := r.rev()
		for _, n := range all {
			n.waitRev(rev, 10*time.Second)
		}
		return user, tok
	}

	t.Run("one code on three nodes at once", func(t *testing.T) {
		user, tok := newUser()
		step := nextStep(t)
		results := make([]pamtest.Result, len(nodes))
		onAll(nodes, func(i int, n *node) { results[i] = n.login(user, code(tok, step)) })
		wins := 0
		for i, res := range results {
			if res.Fatal != "" {
				t.Fatalf("%s: %s", nodes[i].name, res.Fatal)
			}
			if res.Code == pamtest.Success {
				wins++
				continue
			}
			res.Want(t, nodes[i].name+" same code, lost the claim", pam.ErrAuth, 1)
			res.WantError(t, nodes[i].name+" same code", "already been used")
		}
		if wins != 1 {
			t.Fatalf("the same code on 3 nodes at once: %d successes, want exactly 1", wins)
		}
	})

	t.Run("the same code later on another node", func(t *testing.T) {
		user, tok := newUser()
		step := nextStep(t)
		refused := nodes[1].metric("pam_totp_sync_claims_total", `{result="refused"}`)
		nodes[0].login(user, code(tok, step)).Want(t, nodes[0].name+" first use", pamtest.Success, 1)
		// nodes[1] never saw the code: only the registry's claim can refuse it.
		res := nodes[1].login(user, code(tok, step))
		res.Want(t, nodes[1].name+" the code used on "+nodes[0].name, pam.ErrAuth, 1)
		res.WantError(t, nodes[1].name+" used code", "already been used")
		if got := nodes[1].metric("pam_totp_sync_claims_total", `{result="refused"}`); got != refused+1 {
			t.Errorf("%s: claims refused %v -> %v, want one more", nodes[1].name, refused, got)
		}
		// The next step's code is still good there.
		nodes[1].login(user, code(tok, step+1)).Want(t, nodes[1].name+" next code", pamtest.Success, 1)
	})

	t.Run("wrong codes spread over three nodes lock the user on all", func(t *testing.T) {
		user, tok := newUser()
		step := nextStep(t)
		wrong := code(tok, step+500) // far outside the window and the skew hint
		for i := range 25 {
			n := nodes[i%len(nodes)]
			res := n.login(user, wrong)
			if res.Fatal != "" || res.Code == pamtest.Success {
				t.Fatalf("%s: wrong code %d: %s %s", n.name, i+1, pamtest.Name(res.Code), res.Fatal)
			}
			// Past any back-off, so every wrong code is judged (and counted) until the lock.
			clk.Set(t, clk.Now().Add(3*time.Second))
		}
		for _, n := range all {
			eventually(t, 5*time.Second, n.name+" has the user's failure record", func() (bool, error) {
				return n.sharedFailures(user).Count >= 20, nil
			})
		}
		// Locked everywhere: a valid, unused code is not even asked for.
		step = nextStep(t)
		for i, n := range all {
			res := n.login(user, code(tok, step-1+uint64(i%3)))
			res.Want(t, n.name+" valid code while locked", pam.ErrMaxtries, 0)
			res.WantError(t, n.name+" locked", "locked")
		}
		// A node's own unlock cannot lift the cluster's count, and says where to go.
		out, _ := runCmd(bin["totp-admin"], "--config", nodes[0].conf, "unlock", user)
		if !strings.Contains(out, "totp-admin --registry "+r.url+" unlock "+user) {
			t.Errorf("totp-admin unlock on a node: %q, want it to point at the registry", out)
		}
		// One unlock at the registry unlocks every node.
		u, err := r.admin.Unlock(ctx(t), user)
		if err != nil || u.Failures < 20 {
			t.Fatalf("Unlock = %+v, %v; want at least 20 failures cleared", u, err)
		}
		rev := r.rev()
		for _, n := range all {
			n.waitRev(rev, 10*time.Second)
		}
		for i, n := range nodes {
			n.login(user, code(tok, step-1+uint64(i))).Want(t, n.name+" after the unlock", pamtest.Success, 1)
		}
	})

	t.Run("registry killed: offline_claims local and deny", func(t *testing.T) {
		user, tok := newUser()
		step := nextStep(t)
		reported := nodes[0].metric("pam_totp_sync_login_events_reported_total", "")
		r.proc.kill()
		res := nodes[0].login(user, code(tok, step))
		res.Want(t, nodes[0].name+" registry down, offline_claims local", pamtest.Success, 1)
		res = strict.login(user, code(tok, step+1))
		res.Want(t, strict.name+" registry down, offline_claims deny", pam.ErrAuth, 1)
		res.WantError(t, strict.name+" deny", "cannot be confirmed")

		r.restart()
		// The claim made offline reaches the registry: another node, which never saw the code,
		// refuses it.
		eventually(t, 40*time.Second, nodes[0].name+" reports its offline claim", func() (bool, error) {
			return nodes[0].metric("pam_totp_sync_login_events_reported_total", "") >= reported+1, nil
		})
		eventually(t, 40*time.Second, nodes[2].name+" is connected again", func() (bool, error) {
			return nodes[2].metric("pam_totp_sync_connected", "") == 1, nil
		})
		res = nodes[2].login(user, code(tok, step))
		res.Want(t, nodes[2].name+" the code accepted offline on "+nodes[0].name, pam.ErrAuth, 1)
		res.WantError(t, nodes[2].name+" offline-claimed code", "already been used")
		// The code the strict node refused was not burned: with the registry back, it is good.
		eventually(t, 40*time.Second, strict.name+" is connected again", func() (bool, error) {
			return strict.metric("pam_totp_sync_connected", "") == 1, nil
		})
		strict.login(user, code(tok, step+1)).Want(t, strict.name+" registry back", pamtest.Success, 1)
	})
}
