//go:build linux

package sync

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
)

// newEtcd starts a 3-member etcd cluster on 127.0.0.1 for one test (build/tools/etcd, from
// `make etcd`) and stops it when the test ends. Tests that kill members own their cluster.
func newEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	c, err := etcdtest.Start(etcdtest.Options{Dir: privateDir(t)})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestReplicasShareOneStore: two registry replicas on one etcd cluster. A user and a token
// written through replica B reach a node that follows replica A and log in there; both replicas
// report the same revision.
func TestReplicasShareOneStore(t *testing.T) {
	needRoot(t)
	a := startRegistry(t, newCA(t, privateDir(t), "ca"), regOptions{Etcd: newEtcd(t)})
	b := a.replica()
	n := newNode(t, a, nodeOptions{})
	for _, r := range []*registry{a, b} {
		if log := r.readLog(); !strings.Contains(log, `msg="store opened" store="etcd http://127.0.0.1:`) {
			t.Fatalf("registry %s did not open the etcd store; its log:\n%s", r.url, tail(log, 20))
		}
	}

	user := pamtest.AddUser(t, userPrefix)
	b.addUser(user)
	step := nextStep(t)
	tok, _ := b.addToken(user, "phone")
	rev := b.rev()
	n.waitRev(rev, 10*time.Second)
	if got := a.rev(); got < rev {
		t.Errorf("replica A at revision %d after replica B wrote %d", got, rev)
	}
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login on the node of replica A with a token written through B: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
}

// readLog is the registry's log so far.
func (r *registry) readLog() string {
	b, _ := os.ReadFile(r.proc.log)
	return string(b)
}
