//go:build linux

package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/kv"
)

// TestUntrustedStore: a registry on etcd, a node, and someone who can write to etcd but has no
// key file. A node record they add with a credential of their choosing gets 401 and the registry
// logs the record; after they truncate the audit chain behind the head the node has seen,
// `totp-admin --registry audit verify` fails naming the node; logins go on.
func TestUntrustedStore(t *testing.T) {
	needRoot(t)
	c := newEtcd(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Etcd: c})
	n := newNode(t, r, nodeOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	step := nextStep(t)
	tok, _ := r.addToken(user, "phone")
	n.waitRev(r.rev(), 10*time.Second)
	verify := func() (string, error) {
		return runCmd(bin["totp-admin"], "--registry", r.url, "--admin-token-file", r.tokenFile,
			"--ca-file", r.ca.PEMFile, "audit", "verify")
	}
	// node add, user add, token add: the node keeps head 3 and reports it.
	eventually(t, 15*time.Second, "the node keeps the audit head in tokens.db", func() (bool, error) {
		m, err := n.meta()
		return err == nil && m.Audit != nil && m.Audit.Seq == 3, err
	})
	eventually(t, 15*time.Second, "audit verify checks the node's head", func() (bool, error) {
		out, err := verify()
		return err == nil && strings.Contains(out, "audit heads that 1 nodes reported"), err
	})

	st, err := kv.OpenEtcd(kv.EtcdOptions{Endpoints: c.Endpoints(), Prefix: r.opts.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := st.Update(context.Background(), func(tx kv.Txn) error { return tx.Put(key, b) }); err != nil {
			t.Fatal(err)
		}
	}

	// A node of the attacker's, with a credential of their choosing.
	const secret = "chosen-by-the-writer"
	sum := sha256.Sum256([]byte(secret))
	put("node/evil", map[string]any{"name": "evil", "scope": scope, "hash": hex.EncodeToString(sum[:]), "created": time.Now().UTC()})
	req, _ := http.NewRequest("GET", r.url+"/v1/sync/snapshot", nil)
	req.Header.Set("Authorization", "Bearer ptn1.evil."+secret)
	resp, err := tlsClient(t, r.ca).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("snapshot with the forged node's credential = %d, want 401", resp.StatusCode)
	}
	if log := r.readLog(); !strings.Contains(log, "fails authentication") || !strings.Contains(log, "key=node/evil") {
		t.Errorf("the registry did not log the forged node record; its log:\n%s", tail(log, 20))
	}

	// The chain cut back to record 2, its head moved with it: it verifies on its own.
	var rec2 map[string]any
	if err := st.View(context.Background(), func(_ int64, tx kv.Txn) error {
		kvp, err := tx.Get(fmt.Sprintf("audit/%020d", 2))
		if err == nil {
			err = json.Unmarshal(kvp.Value, &rec2)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(context.Background(), func(tx kv.Txn) error {
		if err := tx.Delete(fmt.Sprintf("audit/%020d", 3)); err != nil {
			return err
		}
		b, _ := json.Marshal(map[string]any{"seq": 2, "hash": rec2["hash"]})
		return tx.Put("meta/audit-head", b)
	}); err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	if err == nil || !strings.Contains(err.Error(), n.name) {
		t.Errorf("audit verify after a truncation = %q, %v; want a failure naming %s", out, err, n.name)
	}
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Errorf("login after the attacks: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
}
