//go:build linux

package sync

import (
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// usedID returns the id of the user's code marked used in the node's state.db ("" none).
func (n *node) usedID(user string) string {
	n.t.Helper()
	id := ""
	err := store.NewState(store.Options{Dir: n.storeDir, Timeout: 5 * time.Second}).View(func(x *store.StateTx) error {
		return x.ForEachBackupUsed(func(u, i string, _ time.Time) error {
			if u == user {
				id = i
			}
			return nil
		})
	})
	if err != nil {
		n.t.Fatalf("%s: read state.db: %v", n.name, err)
	}
	return id
}

// hasBackup reports whether the node's tokens.db holds the user's backup code id.
func (n *node) hasBackup(user, id string) bool {
	has := false
	_ = n.tokens().View(func(x *store.TokensTx) error {
		has = x.HasBackupCode(user, id)
		return nil
	})
	return has
}

// TestUsedCodeRevokedEverywhere: a helpdesk passcode or a backup code used in a login on one
// node is deleted at the registry and refused on every other node shortly after.
func TestUsedCodeRevokedEverywhere(t *testing.T) {
	needRoot(t)
	r, nodes := cluster(t, regOptions{})
	tests := []struct {
		name  string
		issue func(t *testing.T, user string) string
	}{
		{"passcode", func(t *testing.T, user string) string {
			p, err := r.admin.Passcode(ctx(t), user, time.Hour)
			if err != nil {
				t.Fatalf("Passcode(%s): %v", user, err)
			}
			return p.Code
		}},
		{"backup code", func(t *testing.T, user string) string {
			codes, err := r.admin.BackupCodes(ctx(t), user)
			if err != nil {
				t.Fatalf("BackupCodes(%s): %v", user, err)
			}
			return codes[0]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := pamtest.AddUser(t, userPrefix)
			r.addUser(user)
			r.addToken(user, "phone")
			code := tt.issue(t, user)
			rev := r.rev()
			for _, n := range nodes {
				n.waitRev(rev, 10*time.Second)
			}

			nodes[0].login(user, code).Want(t, nodes[0].name+" "+tt.name, pamtest.Success, -1)
			start := time.Now()
			id := nodes[0].usedID(user)
			if id == "" {
				t.Fatalf("%s: no used mark in state.db after the login", nodes[0].name)
			}
			// Poll every node's tokens.db until the registry's delete has reached all of them.
			gone := make([]time.Duration, len(nodes))
			for left := len(nodes); left > 0; {
				if time.Since(start) > 2500*time.Millisecond {
					t.Fatalf("%s %s still in tokens.db %v after the login (times %v)", tt.name, id,
						time.Since(start).Round(time.Millisecond), gone)
				}
				for i, n := range nodes {
					if gone[i] == 0 && !n.hasBackup(user, id) {
						gone[i], left = time.Since(start), left-1
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			took := time.Since(start)
			t.Logf("%s: used on %s to deleted on all %d nodes: %v (per node %v)", tt.name, nodes[0].name,
				len(nodes), took.Round(time.Millisecond), gone)
			for _, n := range nodes {
				if res := n.login(user, code); res.Fatal != "" || res.Code == pamtest.Success {
					t.Errorf("%s: Authenticate(used %s) = %s %s, want a failure", n.name, tt.name, pamtest.Name(res.Code), res.Fatal)
				}
			}
			if got := nodes[0].metric("pam_totp_sync_used_reported_total", ""); got < 1 {
				t.Errorf("%s: pam_totp_sync_used_reported_total = %v, want >= 1", nodes[0].name, got)
			}
			var found bool
			recs, err := r.admin.Audit(ctx(t), 0, 10000)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"passcode": "passcode_used", "backup code": "backup_code_used"}[tt.name]
			for _, a := range recs {
				if a.Actor == "node:"+nodes[0].name && a.Action == want && a.Target == "user/"+user {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit record %s by node:%s for user/%s", want, nodes[0].name, user)
			}
		})
	}
}
