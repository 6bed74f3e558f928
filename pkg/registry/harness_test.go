package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

const testAdminToken = "admin-token-for-tests"

// testCA is a throwaway CA that issues server and client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pemBlock("CERTIFICATE", der)}
}

// issue returns a leaf certificate for cn (a server for 127.0.0.1 when server is true).
func (ca *testCA) issue(t testing.TB, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// env is one registry under test: a real kv file, a keyring, TLS from a throwaway CA.
type env struct {
	t       testing.TB
	srv     *Server
	store   kv.Store
	keys    *seal.Keyring
	ts      *httptest.Server
	ca      *testCA
	client  *http.Client
	path    string
	keyLine string // the keyring's key file line
}

type envOptions struct {
	mtls bool
	cfg  func(*Config)
	opts func(*Options) // last changes to the server's Options
	// store, when set, is the registry's store instead of a bbolt file (an etcd store, say).
	store kv.Store
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "store", "registry.db")
	st := o.store
	if st == nil {
		var err error
		if st, err = kv.OpenBolt(path, kv.BoltOptions{Timeout: time.Second, HistoryLimit: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	line, err := seal.GenerateKey(rand.Reader, "k1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := seal.ParseKeyring([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.BookmarkInterval = time.Second
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	ca := newCA(t, "test CA")
	if o.mtls {
		cfg.ClientCA = "/unused/in/tests"
	}
	sum := sha256.Sum256([]byte(testAdminToken))
	so := Options{Config: cfg, Store: st, Sealer: keys,
		Admins: []AdminToken{{Name: "alice-admin", Hash: sum}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if o.opts != nil {
		o.opts(&so)
	}
	srv, err := New(context.Background(), so)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	applyLimits(ts.Config, cfg.HTTP)
	pair, _, _ := ca.issue(t, "registry", true)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if o.mtls {
		ts.TLS.ClientCAs = ca.pool
		ts.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	}
	ts.StartTLS()
	e := &env{t: t, srv: srv, store: st, keys: keys, ts: ts, ca: ca, path: path, keyLine: line}
	e.client = e.newClient(nil)
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.ts == nil {
		return
	}
	e.srv.Shutdown()
	e.ts.CloseClientConnections()
	e.ts.Close()
	e.store.Close()
	e.ts = nil
}

// newClient trusts the test CA, optionally presenting a client certificate.
func (e *env) newClient(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: e.ca.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
}

// admin makes an admin request and decodes the JSON answer into out (if not nil).
func (e *env) admin(method, path string, body any, out any) int {
	e.t.Helper()
	return e.do(method, path, testAdminToken, body, out)
}

func (e *env) do(method, path, token string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// mustAdmin fails the test unless the request answers want.
func (e *env) mustAdmin(want int, method, path string, body any, out any) {
	e.t.Helper()
	var raw json.RawMessage
	if got := e.admin(method, path, body, &raw); got != want {
		e.t.Fatalf("%s %s = %d (%s), want %d", method, path, got, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) addUser(name string, scopes ...string) {
	e.t.Helper()
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": name, "scopes": scopes}, nil)
}

func (e *env) addToken(user string) registryapi.AddedToken {
	e.t.Helper()
	var ti registryapi.AddedToken
	e.mustAdmin(201, "POST", "/v1/admin/users/"+user+"/tokens", map[string]any{"name": "phone"}, &ti)
	return ti
}

func (e *env) addNode(name, scope string) string {
	e.t.Helper()
	var out registryapi.NewNode
	e.mustAdmin(201, "POST", "/v1/admin/nodes", map[string]string{"name": name, "scope": scope}, &out)
	return out.Credential
}

// nodeGet makes a node request with a bearer credential.
func (e *env) nodeGet(cred, path string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// snapshot reads and checks a node's snapshot, returning its records by key.
func (e *env) snapshot(cred string) (int64, map[string][]byte, *syncframe.Digest) {
	e.t.Helper()
	resp := e.nodeGet(cred, "/v1/sync/snapshot")
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("snapshot = %d", resp.StatusCode)
	}
	recs := map[string][]byte{}
	rev, d, err := syncframe.Snapshot(syncframe.NewReader(resp.Body), func(f syncframe.Frame) error {
		recs[f.Key] = append([]byte(nil), f.Value...)
		return nil
	})
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	return rev, recs, d
}

// node is a test node: its set and digest, kept like totp-syncd keeps them.
type node struct {
	t      testing.TB
	recs   map[string][]byte
	digest syncframe.Digest
	rev    int64
	w      *syncframe.Watch
	body   io.Closer
}

// watch opens a watch stream after rev.
func (e *env) watch(cred string, since int64) (*syncframe.Watch, *http.Response) {
	e.t.Helper()
	resp := e.nodeGet(cred, "/v1/sync/watch?since="+itoa(since))
	if resp.StatusCode != 200 {
		resp.Body.Close()
		e.t.Fatalf("watch since %d = %d", since, resp.StatusCode)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return syncframe.NewWatch(syncframe.NewReader(resp.Body), since), resp
}

// follow snapshots and then watches, as totp-syncd does.
func (e *env) follow(cred string) *node {
	e.t.Helper()
	rev, recs, d := e.snapshot(cred)
	n := &node{t: e.t, recs: recs, digest: *d, rev: rev}
	var resp *http.Response
	n.w, resp = e.watch(cred, rev)
	n.body = resp.Body
	return n
}

// next reads the next batch or bookmark, applying a batch and checking a bookmark.
func (n *node) next() (*syncframe.Batch, *syncframe.Frame) {
	n.t.Helper()
	b, bm, err := n.w.Next()
	if err != nil {
		n.t.Fatalf("watch: %v", err)
	}
	if b != nil {
		for _, f := range b.Frames {
			if old, ok := n.recs[f.Key]; ok {
				n.digest.Remove(f.Key, old)
				delete(n.recs, f.Key)
			}
			if f.Type == syncframe.Put {
				n.recs[f.Key] = append([]byte(nil), f.Value...)
				n.digest.Add(f.Key, f.Value)
			}
		}
		n.rev = b.Rev
	}
	if bm != nil {
		if !n.digest.Matches(bm.Count, bm.Digest) {
			n.t.Fatalf("bookmark at %d: count %d digest %s; node has %d %s", bm.Rev, bm.Count, bm.Digest,
				n.digest.Count(), n.digest.String())
		}
		n.rev = bm.Rev
	}
	return b, bm
}

// nextBatch skips bookmarks up to the next batch.
func (n *node) nextBatch() *syncframe.Batch {
	n.t.Helper()
	for {
		if b, _ := n.next(); b != nil {
			return b
		}
	}
}

// syncTo reads until a bookmark at or after rev.
func (n *node) syncTo(rev int64) {
	n.t.Helper()
	for {
		if _, bm := n.next(); bm != nil && bm.Rev >= rev {
			return
		}
	}
}

func itoa(n int64) string { return big.NewInt(n).String() }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
