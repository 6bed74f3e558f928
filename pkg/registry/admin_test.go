package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

func TestAdminFlows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var tok registryapi.AddedToken
	var pendingID string
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
		check  func(t *testing.T, raw json.RawMessage)
	}{
		{name: "create user", method: "POST", path: "/v1/admin/users",
			body: map[string]any{"name": "ann", "mail": "ann@example.org", "scopes": []string{"b", "a", "a"}}, want: 201,
			check: func(t *testing.T, raw json.RawMessage) {
				var u registryapi.User
				json.Unmarshal(raw, &u)
				if strings.Join(u.Scopes, ",") != "a,b" {
					t.Errorf("scopes = %v, want [a b]", u.Scopes)
				}
			}},
		{name: "duplicate user", method: "POST", path: "/v1/admin/users", body: map[string]any{"name": "ann"}, want: 409},
		{name: "user name with slash", method: "POST", path: "/v1/admin/users", body: map[string]any{"name": "a/b"}, want: 400},
		{name: "unknown field", method: "POST", path: "/v1/admin/users", body: `{"name":"x","admin":true}`, want: 400},
		{name: "bad scope", method: "POST", path: "/v1/admin/users", body: map[string]any{"name": "x", "scopes": []string{"a b"}}, want: 400},
		{name: "get user", method: "GET", path: "/v1/admin/users/ann", want: 200},
		{name: "get missing user", method: "GET", path: "/v1/admin/users/zed", want: 404},
		{name: "generated token", method: "POST", path: "/v1/admin/users/ann/tokens", body: map[string]any{}, want: 201,
			check: func(t *testing.T, raw json.RawMessage) {
				json.Unmarshal(raw, &tok)
				if tok.Secret == "" || !strings.HasPrefix(tok.URI, "otpauth://totp/pam-totp:ann?secret=") || tok.State != "active" || tok.Name != "token-1" {
					t.Errorf("token = %+v, want a secret, a URI, state active, name token-1", tok)
				}
			}},
		{name: "given secret", method: "POST", path: "/v1/admin/users/ann/tokens",
			body: map[string]any{"name": "yubi", "secret": "JBSWY3DPEHPK3PXP", "digits": 8, "algorithm": "sha256"}, want: 201,
			check: func(t *testing.T, raw json.RawMessage) {
				if bytes.Contains(raw, []byte("JBSWY3DP")) || bytes.Contains(raw, []byte(`"uri"`)) {
					t.Errorf("answer %s repeats a secret the admin gave", raw)
				}
			}},
		{name: "same secret again", method: "POST", path: "/v1/admin/users/ann/tokens", body: map[string]any{"secret": "JBSWY3DPEHPK3PXP"}, want: 409},
		{name: "bad secret", method: "POST", path: "/v1/admin/users/ann/tokens", body: map[string]any{"secret": "!!"}, want: 400},
		{name: "bad digits", method: "POST", path: "/v1/admin/users/ann/tokens", body: map[string]any{"digits": 9}, want: 400},
		{name: "pending token", method: "POST", path: "/v1/admin/users/ann/tokens", body: map[string]any{"name": "p", "state": "pending"}, want: 201,
			check: func(t *testing.T, raw json.RawMessage) {
				var p registryapi.AddedToken
				json.Unmarshal(raw, &p)
				pendingID = p.ID
			}},
		// Disabled, then enabled, a pending token would be active without a verified code.
		{name: "disable pending refused", method: "PATCH", path: "/v1/admin/users/ann/tokens/{pending}", body: map[string]any{"state": "disabled"}, want: 409},
		{name: "enable pending refused", method: "PATCH", path: "/v1/admin/users/ann/tokens/{pending}", body: map[string]any{"state": "active"}, want: 409},
		{name: "token for missing user", method: "POST", path: "/v1/admin/users/zed/tokens", body: map[string]any{}, want: 404},
		{name: "list tokens has no secrets", method: "GET", path: "/v1/admin/users/ann/tokens", want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var l []token.Info
				json.Unmarshal(raw, &l)
				if len(l) != 3 || bytes.Contains(raw, []byte("secret")) || bytes.Contains(raw, []byte(tok.Secret)) {
					t.Errorf("tokens = %s, want 3 without secrets", raw)
				}
			}},
		{name: "disable token", method: "PATCH", path: "/v1/admin/users/ann/tokens/{tok}", body: map[string]any{"state": "disabled"}, want: 200},
		{name: "state pending refused", method: "PATCH", path: "/v1/admin/users/ann/tokens/{tok}", body: map[string]any{"state": "pending"}, want: 400},
		{name: "rename token", method: "PATCH", path: "/v1/admin/users/ann/tokens/{tok}", body: map[string]any{"name": "old phone"}, want: 200},
		{name: "backup codes", method: "POST", path: "/v1/admin/users/ann/backup-codes", want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var c struct{ Codes []string }
				json.Unmarshal(raw, &c)
				if len(c.Codes) != 10 {
					t.Errorf("codes = %s, want 10", raw)
				}
			}},
		{name: "passcode", method: "POST", path: "/v1/admin/users/ann/passcode", body: map[string]any{"ttl": "2h"}, want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var p struct {
					Code    string
					Expires time.Time
				}
				json.Unmarshal(raw, &p)
				if p.Code == "" || time.Until(p.Expires) < 119*time.Minute {
					t.Errorf("passcode = %s, want a code expiring in 2h", raw)
				}
			}},
		{name: "passcode ttl too long", method: "POST", path: "/v1/admin/users/ann/passcode", body: map[string]any{"ttl": "30d"}, want: 400},
		{name: "backup codes again keep the passcode", method: "POST", path: "/v1/admin/users/ann/backup-codes", want: 200},
		{name: "counts", method: "GET", path: "/v1/admin/users", want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var l []registryapi.User
				json.Unmarshal(raw, &l)
				if len(l) != 1 || l[0].Tokens != 3 || l[0].BackupCodes != 11 {
					t.Errorf("users = %s, want ann with 3 tokens and 11 codes", raw)
				}
			}},
		{name: "delete token", method: "DELETE", path: "/v1/admin/users/ann/tokens/{tok}", want: 200},
		{name: "delete token again", method: "DELETE", path: "/v1/admin/users/ann/tokens/{tok}", want: 404},
		{name: "reset", method: "POST", path: "/v1/admin/users/ann/reset", body: map[string]any{"reason": "lost phone"}, want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var r map[string]any
				json.Unmarshal(raw, &r)
				if r["tokens"] != float64(2) || r["backup_codes"] != float64(11) {
					t.Errorf("reset = %s, want 2 tokens and 11 codes removed", raw)
				}
			}},
		{name: "node with bad name", method: "POST", path: "/v1/admin/nodes", body: map[string]any{"name": "a/b", "scope": "x"}, want: 400},
		{name: "node", method: "POST", path: "/v1/admin/nodes", body: map[string]any{"name": "login1.hpc", "scope": "a"}, want: 201,
			check: func(t *testing.T, raw json.RawMessage) {
				var n registryapi.NewNode
				json.Unmarshal(raw, &n)
				if !strings.HasPrefix(n.Credential, "ptn1.login1.hpc.") || len(n.Credential) != len("ptn1.login1.hpc.")+43 || !n.Changed {
					t.Errorf("node = %s, want a ptn1 credential", raw)
				}
			}},
		// Adding a node that exists as asked changes nothing and shows no credential; in
		// another scope it is a conflict.
		{name: "node again", method: "POST", path: "/v1/admin/nodes", body: map[string]any{"name": "login1.hpc", "scope": "a"}, want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				if string(raw) != `{"name":"login1.hpc","scope":"a","changed":false}` {
					t.Errorf("node again = %s, want it unchanged, without a credential", raw)
				}
			}},
		{name: "node in another scope", method: "POST", path: "/v1/admin/nodes", body: map[string]any{"name": "login1.hpc", "scope": "b"}, want: 409},
		{name: "delete user", method: "DELETE", path: "/v1/admin/users/ann", want: 200},
		{name: "unknown endpoint", method: "GET", path: "/v1/admin/nothing", want: 404},
		{name: "body too large", method: "POST", path: "/v1/admin/users", body: strings.Repeat(" ", maxBody+1), want: 413},
		{name: "audit", method: "GET", path: "/v1/admin/audit?after=2&limit=3", want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var l []AuditRecord
				json.Unmarshal(raw, &l)
				if len(l) != 3 || l[0].Seq != 3 || l[0].Actor != "alice-admin" {
					t.Errorf("audit = %s, want records 3-5 by alice-admin", raw)
				}
			}},
		{name: "audit verify", method: "GET", path: "/v1/admin/audit/verify", want: 200,
			check: func(t *testing.T, raw json.RawMessage) {
				var v registryapi.AuditCheck
				json.Unmarshal(raw, &v)
				if !v.OK || v.Records < 10 {
					t.Errorf("verify = %s, want ok", raw)
				}
			}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			path := strings.NewReplacer("{tok}", tok.ID, "{pending}", pendingID).Replace(st.path)
			var raw json.RawMessage
			if got := e.admin(st.method, path, st.body, &raw); got != st.want {
				t.Fatalf("%s %s = %d (%s), want %d", st.method, path, got, raw, st.want)
			}
			if st.want >= 400 && !bytes.Contains(raw, []byte(`"error"`)) {
				t.Errorf("error answer %s has no error field", raw)
			}
			if st.check != nil {
				st.check(t, raw)
			}
		})
	}
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cred := e.addNode("n1", "a")
	for _, tt := range []struct{ name, token string }{{"none", ""}, {"wrong", "nope"}, {"node credential", cred}} {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.do("GET", "/v1/admin/users", tt.token, nil, nil); got != 401 {
				t.Errorf("GET users with %s token = %d, want 401", tt.name, got)
			}
		})
	}
}

func TestAuditChainDetectsEdit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, u := range []string{"a", "b", "c", "d"} {
		e.addUser(u, "x")
	}
	v, err := e.srv.VerifyAudit(context.Background())
	if err != nil || !v.OK || v.Records != 4 {
		t.Fatalf("VerifyAudit = %+v, %v; want ok with 4 records", v, err)
	}
	tests := []struct {
		name    string
		edit    func(x kv.Txn) error
		wantSeq int64
	}{
		{"edited reason", func(x kv.Txn) error {
			kvp, _ := x.Get(auditKey(2))
			return x.Put(auditKey(2), bytes.Replace(kvp.Value, []byte(`"target":"user/b"`), []byte(`"target":"user/z"`), 1))
		}, 2},
		{"removed record", func(x kv.Txn) error { return x.Delete(auditKey(3)) }, 3},
		{"removed last record", func(x kv.Txn) error { return x.Delete(auditKey(4)) }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case on its own copy of the chain: edit, verify, undo.
			var saved []kv.KeyValue
			e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
				return tx.Range(prefixAudit, func(kvp kv.KeyValue) error { saved = append(saved, kvp); return nil })
			})
			if _, err := e.store.Update(context.Background(), tt.edit); err != nil {
				t.Fatal(err)
			}
			v, err := e.srv.VerifyAudit(context.Background())
			if err != nil || v.OK || v.BadSeq != tt.wantSeq {
				t.Errorf("VerifyAudit after %s = %+v, %v; want a break at %d", tt.name, v, err, tt.wantSeq)
			}
			e.store.Update(context.Background(), func(x kv.Txn) error {
				for _, kvp := range saved {
					x.Put(kvp.Key, kvp.Value)
				}
				return nil
			})
		})
	}
}

func TestNoSecretInStoreFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	secret := make([]byte, 20)
	rand.Read(secret)
	b32 := totp.EncodeSecret(secret)
	e.mustAdmin(201, "POST", "/v1/admin/users/ann/tokens", map[string]any{"secret": b32}, nil)
	var gen registryapi.AddedToken
	e.mustAdmin(201, "POST", "/v1/admin/users/ann/tokens", map[string]any{}, &gen)
	genRaw, _ := totp.DecodeSecret(gen.Secret)
	var codes struct{ Codes []string }
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/backup-codes", nil, &codes)
	var pc struct{ Code string }
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/passcode", nil, &pc)
	cred := e.addNode("n1", "alpha")
	e.close() // flush and close the store

	data, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("user/ann")) {
		t.Fatal("the store file does not look like the store")
	}
	needles := map[string][]byte{"credential": []byte(cred[strings.LastIndexByte(cred, '.')+1:]), "backup code": []byte(codes.Codes[0]),
		"passcode": []byte(pc.Code)}
	for name, s := range map[string][]byte{"given": secret, "generated": genRaw} {
		needles[name+" raw"] = s
		needles[name+" base32"] = []byte(totp.EncodeSecret(s))
		needles[name+" base32 lower"] = []byte(strings.ToLower(totp.EncodeSecret(s)))
		needles[name+" hex"] = []byte(hex.EncodeToString(s))
		needles[name+" base64"] = []byte(base64.StdEncoding.EncodeToString(s))
		needles[name+" base64 (json)"] = []byte(base64.StdEncoding.EncodeToString(s)[:20])
	}
	for name, n := range needles {
		if bytes.Contains(data, n) {
			t.Errorf("the store file holds the %s", name)
		}
	}
}

func TestImportCSV(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	good := "user,secret,name\nann,JBSWY3DPEHPK3PXP,phone\nbob,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
	tests := []struct {
		name, query, body     string
		want                  int
		added, dups, newUsers int
	}{
		{"valid", "?scope=alpha", good, 200, 2, 0, 1},
		{"again: duplicates", "?scope=alpha", good, 200, 0, 2, 0},
		{"invalid line refuses all", "", "cat,JBSWY3DPEHPK3PXQ\ndan,not base32!\n", 400, 0, 0, 0},
		{"skip invalid", "?skip_invalid=1", "cat,JBSWY3DPEHPK3PXQ\ndan,not base32!\n", 200, 1, 0, 1},
		{"bad params", "?digits=9", good, 400, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep ImportReport
			if got := e.admin("POST", "/v1/admin/import/csv"+tt.query, tt.body, &rep); got != tt.want {
				t.Fatalf("import = %d %+v, want %d", got, rep, tt.want)
			}
			if tt.want == 200 && (rep.Added != tt.added || rep.Duplicates != tt.dups || rep.UsersCreated != tt.newUsers) {
				t.Errorf("import = %+v, want added %d duplicates %d users %d", rep, tt.added, tt.dups, tt.newUsers)
			}
		})
	}
	var u registryapi.User
	e.mustAdmin(200, "GET", "/v1/admin/users/bob", nil, &u)
	if len(u.Scopes) != 1 || u.Scopes[0] != "alpha" || u.Tokens != 1 {
		t.Errorf("bob = %+v, want scope alpha and one token", u)
	}
}

func TestImportGA(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	file := "JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\" TOTP_AUTH\n12345678\n87654321\n"
	var rep registryapi.GAResult
	e.mustAdmin(200, "POST", "/v1/admin/import/google-authenticator?user=ann", file, &rep)
	if rep.Already || rep.Scratch != 2 || rep.ID == "" || rep.Token.Name != "google-authenticator" {
		t.Errorf("import = %+v, want a new token with 2 scratch codes", rep)
	}
	e.mustAdmin(200, "POST", "/v1/admin/import/google-authenticator?user=ann", file, &rep)
	if !rep.Already {
		t.Errorf("second import = %+v, want already", rep)
	}
	e.mustAdmin(400, "POST", "/v1/admin/import/google-authenticator?user=ann", "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n", nil)
	e.mustAdmin(404, "POST", "/v1/admin/import/google-authenticator?user=zed", file, nil)
}

func TestRotateKeyReseals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	for range 3 {
		e.addToken("ann")
	}
	cred := e.addNode("n1", "alpha")
	_, before, dBefore := e.snapshot(cred)

	line, _ := seal.GenerateKey(rand.Reader, "k2")
	keys2 := combine(t, e, line)
	rep, err := Reseal(context.Background(), e.store, keys2, "root", time.Now)
	// The 3 tokens re-sealed, and they, the user and the node re-authenticated.
	if err != nil || rep.Resealed != 5 || rep.Records != 5 || rep.Refused != 0 {
		t.Fatalf("Reseal = %+v, %v; want 5 of 5", rep, err)
	}
	rep, err = Reseal(context.Background(), e.store, keys2, "root", time.Now)
	if err != nil || rep.Resealed != 0 {
		t.Fatalf("second Reseal = %+v, %v; want nothing to do", rep, err)
	}
	// A registry started with the new keyring serves the same set.
	srv2, err := New(context.Background(), Options{Config: e.srv.cfg, Store: e.store, Sealer: keys2, Logger: e.srv.log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	_, count, digest, _ := srv2.idx.view("alpha")
	if !dBefore.Matches(count, digest) || len(before) != int(count) {
		t.Errorf("after rotation the index has %d %s, before %d %s", count, digest, dBefore.Count(), dBefore.String())
	}
	// The chain is keyed: the rotation's records are under the new key, which srv2 has.
	if v, _ := srv2.VerifyAudit(context.Background()); !v.OK {
		t.Errorf("audit after rotation: %+v", v)
	}
	// The node's credential still works and the user is still readable under the new keyring.
	if _, err := srv2.Audit(context.Background(), 0, 100); err != nil {
		t.Errorf("Audit after rotation: %v", err)
	}
}

// combine returns a keyring with the env's key and a new primary.
func combine(t *testing.T, e *env, newLine string) *seal.Keyring {
	t.Helper()
	dir := t.TempDir()
	path := dir + "/keys"
	if err := os.WriteFile(path, []byte(e.keyLine+newLine), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := seal.LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
