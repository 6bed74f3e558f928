package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// etcdEnv is a registry on a real one-member etcd whose log the test reads (a file: the
// handler serialises writes, and reading it races with none).
func etcdEnv(t *testing.T) (*env, logFile) {
	t.Helper()
	_, _, st := etcdStore(t, "/untrusted/")
	logs := logFile(filepath.Join(t.TempDir(), "registry.log"))
	f, err := os.Create(string(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	e := newEnv(t, envOptions{store: st, opts: func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(f, nil))
	}})
	return e, logs
}

// logFile is the path of a test registry's log.
type logFile string

func (l logFile) String() string {
	b, _ := os.ReadFile(string(l))
	return string(b)
}

// write puts raw bytes at key, straight into the store: what anyone with write access to etcd
// can do without the key file.
func write(t *testing.T, st kv.Store, key string, value []byte) {
	t.Helper()
	if _, err := st.Update(context.Background(), func(tx kv.Txn) error { return tx.Put(key, value) }); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, st kv.Store, key string) []byte {
	t.Helper()
	var out []byte
	if err := st.View(context.Background(), func(_ int64, tx kv.Txn) error {
		kvp, err := tx.Get(key)
		out = kvp.Value
		return err
	}); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return out
}

func wantRefusalLogged(t *testing.T, logs logFile, key string) {
	t.Helper()
	if !strings.Contains(logs.String(), "fails authentication") || !strings.Contains(logs.String(), "key="+key) {
		t.Errorf("log does not name the refused record %s:\n%s", key, logs.String())
	}
}

func TestStoreWriterCannotAddANode(t *testing.T) {
	t.Parallel()
	e, logs := etcdEnv(t)
	e.addUser("ann", "alpha")
	e.addToken("ann")
	good := e.addNode("n1", "alpha")
	const secret = "chosen-by-the-attacker"
	sum := sha256.Sum256([]byte(secret))
	plain, _ := json.Marshal(nodeRecord{Name: "evil", Scope: "alpha", Hash: hex.EncodeToString(sum[:])})
	// The same, with the MAC of the genuine node n1 copied over.
	var n1 storedNode
	if err := json.Unmarshal(read(t, e.store, prefixNode+"n1"), &n1); err != nil {
		t.Fatal(err)
	}
	copied, _ := json.Marshal(storedNode{nodeRecord: nodeRecord{Name: "evil2", Scope: "alpha", Hash: hex.EncodeToString(sum[:])}, MAC: n1.MAC})
	// n1 itself, moved to scope beta and given the attacker's credential hash.
	n1.Scope, n1.Hash = "beta", hex.EncodeToString(sum[:])
	moved, _ := json.Marshal(n1)
	for _, tc := range []struct{ name, node string }{{"no MAC", "evil"}, {"copied MAC", "evil2"}, {"edited node", "n1"}} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.node {
			case "evil":
				write(t, e.store, prefixNode+"evil", plain)
			case "evil2":
				write(t, e.store, prefixNode+"evil2", copied)
			case "n1":
				write(t, e.store, prefixNode+"n1", moved)
			}
			resp := e.nodeGet(credentialTag+"."+tc.node+"."+secret, "/v1/sync/snapshot")
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("snapshot with the forged credential of %s = %d, want 401", tc.node, resp.StatusCode)
			}
			wantRefusalLogged(t, logs, prefixNode+tc.node)
		})
	}
	// The registry keeps serving: a genuine node of another name still syncs.
	_ = good
	other := e.addNode("n2", "alpha")
	if _, recs, _ := e.snapshot(other); len(recs) != 1 {
		t.Errorf("n2's snapshot has %d records, want ann's token", len(recs))
	}
	var list []map[string]any
	e.mustAdmin(200, "GET", "/v1/admin/nodes", nil, &list)
	for _, n := range list {
		if n["name"] == "evil" || n["name"] == "evil2" {
			t.Errorf("node list shows the forged node %v", n["name"])
		}
	}
}

func TestStoreWriterCannotMoveAUser(t *testing.T) {
	t.Parallel()
	e, logs := etcdEnv(t)
	e.addUser("ann", "alpha")
	tok := e.addToken("ann")
	e.addUser("bob", "beta")
	e.addToken("bob")
	beta := e.addNode("nb", "beta")
	alpha := e.addNode("na", "alpha")

	// The user record: ann moved into beta as well, its MAC kept.
	var u storedUser
	if err := json.Unmarshal(read(t, e.store, prefixUser+"ann"), &u); err != nil {
		t.Fatal(err)
	}
	u.Scopes = []string{"alpha", "beta"}
	raw, _ := json.Marshal(u)
	write(t, e.store, prefixUser+"ann", raw)
	// An admin change to ann now would re-wrap her records with the forged scopes: it is refused.
	if code := e.admin("POST", "/v1/admin/users/ann/tokens", map[string]any{"name": "second"}, nil); code < 400 {
		t.Errorf("adding a token to the moved user = %d, want a refusal", code)
	}
	wantRefusalLogged(t, logs, prefixUser+"ann")

	// The token's wrapper: its scopes edited to include beta, sealed bytes and MAC kept.
	key := syncframe.TokenKey("ann", tok.ID)
	w, err := decodeWrapper(read(t, e.store, prefixRec+key))
	if err != nil {
		t.Fatal(err)
	}
	w.Scopes = []string{"alpha", "beta"}
	raw, _ = json.Marshal(w)
	write(t, e.store, prefixRec+key, raw)

	for _, tc := range []struct {
		name, cred string
		want       int
	}{{"beta node", beta, 1}, {"alpha node", alpha, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			_, recs, _ := e.snapshot(tc.cred)
			for k := range recs {
				if strings.Contains(k, "/ann/") {
					t.Errorf("%s receives ann's record %s", tc.name, k)
				}
			}
			if len(recs) != tc.want {
				t.Errorf("%s's snapshot has %d records, want %d", tc.name, len(recs), tc.want)
			}
		})
	}
	wantRefusalLogged(t, logs, prefixRec+key)
}

func TestStoreWriterCannotRewriteTheAuditChain(t *testing.T) {
	t.Parallel()
	e, _ := etcdEnv(t)
	e.addUser("ann", "alpha")
	e.addToken("ann")
	e.addNode("n1", "alpha")
	if v, err := e.srv.VerifyAudit(context.Background()); err != nil || !v.OK || v.Records != 3 {
		t.Fatalf("VerifyAudit = %+v, %v; want 3 records OK", v, err)
	}
	// Rewrite record 2 and recompute the chain from there as SHA-256 did before it was keyed.
	recs, err := e.srv.Audit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	recs[1].Actor = "someone-else"
	for i := 1; i < len(recs); i++ {
		recs[i].Prev = recs[i-1].Hash
		recs[i].Hash = legacyChainHash(recs[i])
		b, _ := json.Marshal(recs[i])
		write(t, e.store, auditKey(recs[i].Seq), b)
	}
	last := recs[len(recs)-1]
	head, _ := json.Marshal(auditHead{Seq: last.Seq, Hash: last.Hash})
	write(t, e.store, keyAuditHead, head)
	v, err := e.srv.VerifyAudit(context.Background())
	if err != nil || v.OK || v.BadSeq != 2 {
		t.Errorf("VerifyAudit after an unkeyed rewrite = %+v, %v; want a failure at record 2", v, err)
	}
	var api map[string]any
	e.mustAdmin(200, "GET", "/v1/admin/audit/verify", nil, &api)
	if api["ok"] != false {
		t.Errorf("audit verify over the API = %v, want ok false", api)
	}
}

// makeLegacy turns e's store into one written before records were authenticated: no MACs and
// an unkeyed audit chain.
func makeLegacy(t *testing.T, e *env) {
	t.Helper()
	var kvs []kv.KeyValue
	if err := e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		return tx.Range("", func(kvp kv.KeyValue) error { kvs = append(kvs, kvp); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	prev := genesis
	for _, kvp := range kvs {
		var m map[string]any
		if err := json.Unmarshal(kvp.Value, &m); err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(kvp.Key, prefixUser), strings.HasPrefix(kvp.Key, prefixNode), strings.HasPrefix(kvp.Key, prefixRec):
			delete(m, "mac")
			b, _ := json.Marshal(m)
			write(t, e.store, kvp.Key, b)
		case strings.HasPrefix(kvp.Key, prefixAudit):
			var r AuditRecord
			_ = json.Unmarshal(kvp.Value, &r)
			r.Prev = prev
			r.Hash = legacyChainHash(r)
			prev = r.Hash
			b, _ := json.Marshal(r)
			write(t, e.store, kvp.Key, b)
			h, _ := json.Marshal(auditHead{Seq: r.Seq, Hash: r.Hash})
			write(t, e.store, keyAuditHead, h)
		}
	}
}

func TestLegacyStoreIsAuthenticatedOnlyOnRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	e.addToken("ann")
	cred := e.addNode("n1", "alpha")
	_, before, dBefore := e.snapshot(cred)
	makeLegacy(t, e)

	opts := Options{Config: e.srv.cfg, Store: e.store, Sealer: e.keys, Logger: e.srv.log}
	if _, err := New(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "authenticate-store") {
		t.Fatalf("New on a legacy store = %v, want a refusal naming authenticate-store", err)
	}
	did, err := AuthenticateStore(context.Background(), e.store, e.keys, e.srv.now, e.srv.log)
	if err != nil || !strings.Contains(did, "3 records authenticated, 0 refused; 6 audit records keyed") {
		t.Fatalf("AuthenticateStore = %q, %v", did, err)
	}
	if did, err := AuthenticateStore(context.Background(), e.store, e.keys, e.srv.now, e.srv.log); err != nil || !strings.Contains(did, "nothing to do") {
		t.Errorf("second AuthenticateStore = %q, %v; want nothing to do", did, err)
	}
	srv2, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	if _, count, digest, _ := srv2.idx.view("alpha"); !dBefore.Matches(count, digest) || len(before) != int(count) {
		t.Errorf("after authenticate-store the index has %d %s, before %d %s", count, digest, dBefore.Count(), dBefore.String())
	}
	if v, err := srv2.VerifyAudit(context.Background()); err != nil || !v.OK || v.Records != 7 {
		// 3 of the admin's, 1 per kind of record authenticated, 1 for the whole.
		t.Errorf("VerifyAudit after authenticate-store = %+v, %v; want 7 records OK", v, err)
	}
}

func TestTruncatedAuditChainNamesTheNode(t *testing.T) {
	t.Parallel()
	e, _ := etcdEnv(t)
	e.addUser("ann", "alpha")
	e.addToken("ann")
	cred := e.addNode("n1", "alpha")
	other := e.addNode("n2", "alpha")
	// n1 follows, sees a bookmark with the audit head (record 4: n2's creation) and acks it.
	n := e.follow(cred)
	var bm *syncframe.Frame
	for bm == nil {
		_, bm = n.next()
	}
	if bm.Audit == nil || bm.Audit.Seq != 4 {
		t.Fatalf("bookmark's audit head = %+v, want record 4", bm.Audit)
	}
	ack := map[string]any{"rev": bm.Rev, "count": bm.Count, "digest": bm.Digest, "lag_ms": 0, "version": "test", "audit": bm.Audit}
	if code := e.do("POST", "/v1/sync/ack", cred, ack, nil); code != 204 {
		t.Fatalf("ack = %d", code)
	}
	// n2 acks an older head (it has seen record 2 only): the chain has it too.
	recs, err := e.srv.Audit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	ack["audit"] = syncframe.Anchor{Seq: 2, Hash: recs[1].Hash}
	if code := e.do("POST", "/v1/sync/ack", other, ack, nil); code != 204 {
		t.Fatalf("ack = %d", code)
	}
	if v, err := e.srv.VerifyAudit(context.Background()); err != nil || !v.OK || v.Anchors != 2 {
		t.Fatalf("VerifyAudit = %+v, %v; want OK with 2 anchors", v, err)
	}

	// A store writer drops the last two records and points the head at record 2: a chain that
	// verifies on its own.
	if _, err := e.store.Update(context.Background(), func(tx kv.Txn) error {
		for _, seq := range []int64{3, 4} {
			if err := tx.Delete(auditKey(seq)); err != nil {
				return err
			}
		}
		head, _ := json.Marshal(auditHead{Seq: 2, Hash: recs[1].Hash})
		return tx.Put(keyAuditHead, head)
	}); err != nil {
		t.Fatal(err)
	}
	v, err := e.srv.VerifyAudit(context.Background())
	if err != nil || v.OK || len(v.Nodes) != 1 || v.Nodes[0] != "n1" || !strings.Contains(v.Error, "n1") {
		t.Errorf("VerifyAudit after truncation = %+v, %v; want a failure naming n1 only", v, err)
	}
	var api map[string]any
	e.mustAdmin(200, "GET", "/v1/admin/audit/verify", nil, &api)
	if api["ok"] != false || !strings.Contains(api["error"].(string), "n1") {
		t.Errorf("audit verify over the API = %v, want a failure naming n1", api)
	}
	// A malformed anchor in an ack is refused.
	ack["audit"] = map[string]any{"seq": 0, "hash": "zz"}
	if code := e.do("POST", "/v1/sync/ack", cred, ack, nil); code != 400 {
		t.Errorf("ack with a malformed anchor = %d, want 400", code)
	}
}

func TestStoreWriterCannotPlantABootstrapCode(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, func(c *Config) { c.Enroll.Bootstrap, c.Mail.Host = BootstrapMail, "127.0.0.1:1" })
	if st, b := e.post(e.cred, "/v1/enroll/bootstrap", map[string]string{"user": "ann"}); st != 200 {
		t.Fatalf("bootstrap = %d %v", st, b)
	}
	var code string
	for _, l := range strings.Split(e.box.take()[0].Body, "\n") {
		if strings.HasPrefix(l, "    ") {
			code = strings.TrimSpace(l)
		}
	}
	// What a writer without the key file can write: a code record with no MAC (here the genuine
	// one, MAC removed, so the code it holds is known).
	var m map[string]any
	if err := json.Unmarshal(read(t, e.store, prefixBoot+"ann"), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "mac")
	planted, _ := json.Marshal(m)
	write(t, e.store, prefixBoot+"ann", planted)
	if st, _ := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": code}); st != 403 {
		t.Errorf("begin with a planted bootstrap code = %d, want 403", st)
	}
}
