//go:build linux

package sync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestMigrateBoltToEtcd: a bbolt registry with a node and a token that logs in is stopped,
// migrated into etcd with `totp-registry migrate`, and started on etcd at the same URL. The node
// meets the new store's epoch and does exactly one full resync (reason epoch); a new code of the
// old token logs in, and so does a token added after the move; `totp-admin audit verify` passes.
func TestMigrateBoltToEtcd(t *testing.T) {
	needRoot(t)
	r, n, user, tok := nodeWithToken(t)
	step := nextStep(t)
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login on bbolt: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
	before, err := n.meta()
	if err != nil || before.Epoch == "" {
		t.Fatalf("tokens.db meta %+v, %v: want the bbolt store's epoch", before, err)
	}
	resyncs := n.metricSum("pam_totp_sync_resyncs_total")

	// The target config: the same registry, its store on etcd.
	etcd := newEtcd(t)
	conf, err := os.ReadFile(r.conf)
	if err != nil {
		t.Fatal(err)
	}
	bolt := r.opts.storeConfig(filepath.Join(r.dir, "data"))
	if !strings.Contains(string(conf), bolt) {
		t.Fatalf("registry.conf does not hold the bbolt store lines %q", bolt)
	}
	etcdOpts := regOptions{Etcd: etcd, Prefix: "/e2e-" + pamtest.RandName(8) + "/"}
	to := filepath.Join(r.dir, "registry-etcd.conf")
	pamtest.WriteFile(t, to, strings.Replace(string(conf), bolt, etcdOpts.storeConfig(""), 1), 0o644)

	if err := r.proc.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(bin["totp-registry"], "migrate", "--config", r.conf, "--to", to)
	if err != nil || !strings.Contains(out, "copied ") || !strings.Contains(out, "new store epoch") {
		t.Fatalf("totp-registry migrate = %v\n%s", err, out)
	}
	t.Logf("totp-registry migrate:\n%s", out)
	if _, err := runCmd(bin["totp-registry"], "migrate", "--config", r.conf, "--to", to); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second migrate into the same prefix = %v, want a refusal (not empty)", err)
	}

	// The registry again, on etcd, at the same URL.
	if err := os.Rename(to, r.conf); err != nil {
		t.Fatal(err)
	}
	r.opts.Etcd, r.opts.Prefix = etcd, etcdOpts.Prefix
	r.restart()
	eventually(t, 45*time.Second, "the node resyncs from the migrated store", func() (bool, error) {
		m, err := n.meta()
		return err == nil && m.Epoch != "" && m.Epoch != before.Epoch, err
	})
	n.waitRev(r.rev(), 10*time.Second)
	if got := n.resyncs("epoch"); got != 1 {
		t.Errorf("resyncs{reason=epoch} = %v, want 1", got)
	}
	if got := n.metricSum("pam_totp_sync_resyncs_total"); got != resyncs+1 {
		t.Errorf("resyncs %v after the move, %v before: want exactly one more", got, resyncs)
	}
	if !strings.Contains(r.readLog(), `store="etcd http://127.0.0.1:`) {
		t.Errorf("the registry did not start on etcd; its log:\n%s", tail(r.readLog(), 20))
	}

	step = nextStep(t)
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login with the migrated token: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
	step = nextStep(t)
	tok2, _ := r.addToken(user, "laptop")
	n.waitRev(r.rev(), 10*time.Second)
	if res := n.login(user, code(tok2, step)); res.Code != pamtest.Success {
		t.Fatalf("login with a token added after the move: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
	if got := n.resyncs("epoch"); got != 1 {
		t.Errorf("resyncs{reason=epoch} = %v after more changes, want still 1", got)
	}
	out, err = runCmd(bin["totp-admin"], "--registry", r.url, "--admin-token-file", r.tokenFile, "--ca-file", r.ca.PEMFile, "audit", "verify")
	if err != nil {
		t.Errorf("totp-admin audit verify after the migration = %v\n%s", err, out)
	}
}
