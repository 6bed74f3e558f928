//go:build linux

package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
)

// TestRegistryMetrics scrapes a real registry with a node following it: requests by endpoint and
// status class, store latency and health, the node's stream and lag, the revision.
func TestRegistryMetrics(t *testing.T) {
	needRoot(t)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Keys: fmt.Sprintf("metrics_listen = \"127.0.0.1:%d\"\n", port)})
	n := newNode(t, r, nodeOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	r.addToken(user, "phone")
	rev := r.rev()
	n.waitRev(rev, 10*time.Second)
	req, _ := http.NewRequest("GET", r.url+"/v1/admin/users", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := tlsClient(t, r.ca).Do(req); err == nil {
		resp.Body.Close()
	}

	eventually(t, 10*time.Second, "the node's ack at the registry's revision", func() (bool, error) {
		v := scrapeMetric(url, "pam_totp_registry_node_behind_revisions", `{node="`+n.name+`"}`)
		return v == 0, fmt.Errorf("behind = %v", v)
	})
	for _, c := range []struct {
		name, labels string
		ok           func(float64) bool
		want         string
	}{
		{"pam_totp_registry_revision", "", func(v float64) bool { return v >= float64(rev) }, fmt.Sprintf(">= %d", rev)},
		{"pam_totp_registry_store_up", "", func(v float64) bool { return v == 1 }, "1"},
		{"pam_totp_registry_watch_streams", "", func(v float64) bool { return v >= 1 }, ">= 1"},
		{"pam_totp_registry_requests_total", `{endpoint="POST /v1/admin/users",class="2xx"}`, func(v float64) bool { return v == 1 }, "1"},
		{"pam_totp_registry_requests_total", `{endpoint="GET /v1/admin/users",class="4xx"}`, func(v float64) bool { return v == 1 }, "1"},
		{"pam_totp_registry_requests_total", `{endpoint="GET /v1/sync/snapshot",class="2xx"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"pam_totp_registry_store_seconds_count", `{op="update"}`, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"pam_totp_registry_store_errors_total", `{op="update",kind="unavailable"}`, func(v float64) bool { return v == 0 }, "0"},
		{"pam_totp_registry_node_last_ack_age_seconds", `{node="` + n.name + `"}`, func(v float64) bool { return v >= 0 && v < 60 }, "0 to 60"},
	} {
		if v := scrapeMetric(url, c.name, c.labels); !c.ok(v) {
			t.Errorf("%s%s = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
}

// TestRegistryStoreHealthMetric: with etcd's quorum lost the registry's metrics say the store is
// down and count the refused write; with the members back, up again.
func TestRegistryStoreHealthMetric(t *testing.T) {
	needRoot(t)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	etcd := newEtcd(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Etcd: etcd, Keys: fmt.Sprintf("metrics_listen = \"127.0.0.1:%d\"\n", port)})
	if v := scrapeMetric(url, "pam_totp_registry_store_up", ""); v != 1 {
		t.Fatalf("pam_totp_registry_store_up = %v with etcd healthy, want 1", v)
	}
	for _, i := range []int{1, 2} {
		if err := etcd.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "store_up 0 without quorum", func() (bool, error) {
		v := scrapeMetric(url, "pam_totp_registry_store_up", "")
		return v == 0, fmt.Errorf("store_up = %v", v)
	})
	user := pamtest.AddUser(t, userPrefix)
	if _, err := r.admin.AddUser(ctx(t), adminclient.NewUser{Name: user, Scopes: []string{scope}}); err == nil {
		t.Fatal("a user was added without etcd's quorum")
	}
	if v := scrapeMetric(url, "pam_totp_registry_store_errors_total", `{op="update",kind="unavailable"}`); v < 1 {
		t.Errorf("store_errors_total{update,unavailable} = %v after a refused write, want >= 1", v)
	}
	if v := scrapeMetric(url, "pam_totp_registry_store_last_unavailable_timestamp_seconds", ""); v <= 0 {
		t.Errorf("store_last_unavailable_timestamp_seconds = %v, want a time", v)
	}
	for _, i := range []int{1, 2} {
		if err := etcd.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "store_up 1 with quorum back", func() (bool, error) {
		v := scrapeMetric(url, "pam_totp_registry_store_up", "")
		return v == 1, fmt.Errorf("store_up = %v", v)
	})
}

// TestAdminTokensRotateOnSIGHUP: a new admin token written to the file works after SIGHUP, the
// one it replaced is refused, and a read-only admin cannot change anything.
func TestAdminTokensRotateOnSIGHUP(t *testing.T) {
	needRoot(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	client := tlsClient(t, r.ca)
	do := func(method, path, tok string) int {
		t.Helper()
		req, _ := http.NewRequest(method, r.url+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sum := sha256.Sum256([]byte("rotated-token"))
	pamtest.WriteFile(t, filepath.Join(r.dir, "admins"), "carol "+hex.EncodeToString(sum[:])+" role=read-only\n", 0o600)
	r.proc.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the rotated token", func() (bool, error) {
		return do("GET", "/v1/admin/users", "rotated-token") == 200, nil
	})
	if got := do("GET", "/v1/admin/users", r.adminToken); got != 401 {
		t.Errorf("the replaced token after SIGHUP = %d, want 401", got)
	}
	if got := do("POST", "/v1/admin/compact", "rotated-token"); got != 403 {
		t.Errorf("POST /v1/admin/compact with a read-only token = %d, want 403", got)
	}
	if !r.proc.running() {
		t.Fatal("totp-registry did not survive SIGHUP")
	}
	log := r.readLog()
	if !strings.Contains(log, `msg="admin tokens reloaded"`) || !strings.Contains(log, `reason="role read-only"`) {
		t.Errorf("registry log lacks the reload or the refusal:\n%s", tail(log, 20))
	}
}
