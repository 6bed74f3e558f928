//go:build linux

package sync

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestNodeAuth: a node that trusts another CA never syncs; a node whose credential is missing,
// wrong or revoked (node removed, its open stream closed) is refused, takes no more changes, and
// keeps serving logins from the copy it has.
func TestNodeAuth(t *testing.T) {
	needRoot(t)
	c := pamtest.NewCA(t, pamtest.PrivateDir(t), "ca")
	other := pamtest.NewCA(t, pamtest.PrivateDir(t), "other")
	r := startRegistry(t, c, regOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	tok, _ := r.addToken(user, "phone")
	step := nextStep(t) // code(step) stays valid (window ±1) for 60 s

	t.Run("wrong CA", func(t *testing.T) {
		n := newNode(t, r, nodeOptions{CAFile: other.PEMFile})
		eventually(t, 10*time.Second, "totp-syncd logs the TLS failure", func() (bool, error) {
			return n.logHas("certificate signed by unknown authority"), nil
		})
		if _, err := n.meta(); err == nil {
			t.Errorf("%s trusts another CA, yet tokens.db exists", n.name)
		}
		if _, err := n.status(); err == nil {
			t.Errorf("totp-syncd status succeeded on a node that never synced")
		}
		if got := n.metric("pam_totp_sync_connected", ""); got != 0 {
			t.Errorf("pam_totp_sync_connected = %v, want 0", got)
		}
		res := n.login(user, code(tok, step))
		if res.Code == pamtest.Success {
			t.Errorf("Authenticate on a never-synced node = PAM_SUCCESS, want a failure (no data is not no token)")
		}
	})

	// Each case breaks a node that has synced; afterwards a new token at the registry must not
	// arrive, and the old one must still log in.
	tests := []struct {
		name    string
		breakIt func(t *testing.T, n *node)
		wantLog string // in the node's log after it was broken
	}{
		{"no credential", func(t *testing.T, n *node) {
			n.proc.kill()
			if err := os.Remove(n.credFile); err != nil {
				t.Fatal(err)
			}
			n.proc.start()
		}, "credential_file"},
		{"wrong credential", func(t *testing.T, n *node) {
			n.proc.kill()
			pamtest.WriteFile(t, n.credFile, "ptn1."+n.name+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 0o600)
			n.proc.start()
		}, "401"},
		{"node removed", func(t *testing.T, n *node) {
			if err := r.admin.RemoveNode(ctx(t), n.name); err != nil {
				t.Fatalf("RemoveNode: %v", err)
			}
		}, "node_removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, r, nodeOptions{})
			n.waitRev(r.rev(), 10*time.Second)
			eventually(t, 5*time.Second, "the watch stream is open", func() (bool, error) {
				return n.metric("pam_totp_sync_connected", "") == 1, nil
			})
			before, err := n.meta()
			if err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, n)
			eventually(t, 10*time.Second, "totp-syncd logs "+tt.wantLog, func() (bool, error) {
				return n.logHas(tt.wantLog), nil
			})
			if tt.name == "node removed" {
				eventually(t, 10*time.Second, "the removed node is refused with 401", func() (bool, error) {
					return n.logHas("401"), nil
				})
			}
			user2 := pamtest.AddUser(t, userPrefix)
			r.addUser(user2)
			r.addToken(user2, "phone")
			time.Sleep(500 * time.Millisecond) // a healthy node applies a change in milliseconds
			after, err := n.meta()
			if err != nil {
				t.Fatalf("tokens.db after the refusal: %v", err)
			}
			if after.Revision != before.Revision || after.Count != before.Count {
				t.Errorf("a refused node applied changes: revision %d -> %d, records %d -> %d",
					before.Revision, after.Revision, before.Count, after.Count)
			}
			if st, err := n.status(); err != nil {
				t.Errorf("totp-syncd status: %v", err)
			} else if rev, _ := st["applied_revision"].(float64); int64(rev) != int64(before.Revision) {
				t.Errorf("totp-syncd status applied_revision = %v, want %d", st["applied_revision"], before.Revision)
			}
			if got := n.metric("pam_totp_sync_connected", ""); got == 1 {
				t.Errorf("pam_totp_sync_connected = 1 on a refused node")
			}
			n.login(user, code(tok, step)).Want(t, "old copy on a refused node", pamtest.Success, -1)
		})
	}

	t.Run("other scope", func(t *testing.T) {
		nn, err := r.admin.AddNode(ctx(t), "node-"+pamtest.RandName(6), scope)
		if err != nil {
			t.Fatal(err)
		}
		hc := tlsClient(t, c)
		for _, tc := range []struct {
			path string
			want int
		}{
			{"/v1/sync/snapshot", http.StatusOK},
			{"/v1/sync/snapshot?scope=" + scope, http.StatusOK},
			{"/v1/sync/snapshot?scope=other", http.StatusForbidden},
			{"/v1/sync/watch?since=1&scope=other", http.StatusForbidden},
			{"/v1/sync/watch?since=1&mode=poll&timeout=1s&scope=other", http.StatusForbidden},
		} {
			req, err := http.NewRequest(http.MethodGet, r.url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+nn.Credential)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s = %d, want %d (%s)", tc.path, resp.StatusCode, tc.want,
					strings.TrimSpace(string(body)))
			}
		}
	})
}
