package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/portal"
)

// TestPortalSessionForged: a session written into the store by someone without the key file —
// made up, moved under another cookie's key, or altered — is no session.
func TestPortalSessionForged(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	ann := e.browser()
	e.signInMail(ann, "ann", "ann@example.org")
	u, _ := url.Parse(e.ts.URL)
	cookie := func(b *browser) string {
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == portal.CookieSession {
				return c.Value
			}
		}
		t.Fatal("no session cookie")
		return ""
	}
	annKey := prefixSession + hashKey(cookie(ann))
	var annSession storedSession
	if err := json.Unmarshal(read(t, e.store, annKey), &annSession); err != nil {
		t.Fatal(err)
	}
	now := e.clock.now().UTC()
	forged := func(s storedSession) []byte {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		name  string
		value []byte
	}{
		{"made up, no MAC", forged(storedSession{Session: portal.Session{User: "bob", Method: portal.SignInMail, Created: now, LastSeen: now, CSRF: "x"}})},
		{"ann's, moved to another key", forged(annSession)},
		{"ann's, made bob's", forged(storedSession{Session: func() portal.Session { s := annSession.Session; s.User = "bob"; return s }(), MAC: annSession.MAC})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := "forged-" + tt.name
			write(t, e.store, prefixSession+hashKey(id), tt.value)
			b := e.browser()
			b.t = t
			b.c.Jar.SetCookies(u, []*http.Cookie{{Name: portal.CookieSession, Value: id, Path: "/"}})
			if p := b.get("/portal/tokens"); p.url != "/portal/signin" {
				t.Errorf("with the forged session: at %s, want the sign-in page", p.url)
			}
		})
	}
	// The real one still works, and an altered copy of it in place does not.
	if p := ann.get("/portal/tokens"); p.url != "/portal/tokens" {
		t.Fatalf("ann's own session: at %s", p.url)
	}
	altered := annSession
	altered.Method = portal.SignInOIDC
	write(t, e.store, annKey, forged(altered))
	if p := ann.get("/portal/tokens"); p.url != "/portal/signin" {
		t.Errorf("ann's session altered in the store: at %s, want the sign-in page", p.url)
	}
}

// TestPortalNodesAcrossReplicas: on etcd, a node that acknowledges to replica A counts on the
// portal of replica B ("active on N of M login nodes"): B's count asks, and A publishes the ack.
// Nothing is published while no page counts.
func TestPortalNodesAcrossReplicas(t *testing.T) {
	t.Parallel()
	_, _, st := etcdStore(t, "/portal-acks/")
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	box := &mailbox{}
	base := newEnv(t, envOptions{store: st, cfg: portalConfig, opts: func(o *Options) { o.Now, o.Notifier = clock.now, box }})
	base.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "ann", "mail": "ann@example.org", "scopes": []string{"alpha"}}, nil)
	e := &portalEnv{enrollEnv: &enrollEnv{env: base, clock: clock, box: box}}
	e.cred = e.addNode("n1", "alpha")

	// Replica B on the same store, with the same key file.
	cfg := DefaultConfig()
	portalConfig(&cfg)
	srvB, err := New(context.Background(), Options{Config: cfg, Store: st, Sealer: e.keys, Now: clock.now, Notifier: box,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tsB := httptest.NewUnstartedServer(srvB.Handler())
	pair, _, _ := e.ca.issue(t, "registry", true)
	tsB.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	tsB.StartTLS()
	t.Cleanup(func() { srvB.Shutdown(); tsB.Close() })

	b := e.browser()
	tl := e.signInMail(b, "ann", "ann@example.org")
	id, _, _ := e.addFirstToken(b, tl, "")
	onB := &browser{t: t, c: b.c, base: tsB.URL} // the same session, served by replica B
	nodes := func(bb *browser) (active, total int) {
		var n struct{ Active, Total int }
		p := bb.get("/portal/tokens/" + id + "/nodes")
		if err := json.Unmarshal([]byte(p.body), &n); err != nil {
			t.Fatalf("nodes: %v: %q", err, p.body)
		}
		return n.Active, n.Total
	}
	// n1 acknowledges the token's revision to A only.
	waitRev(t, e.srv, st)
	e.ack(e.cred)
	if a, n := nodes(b); a != 1 || n != 1 {
		t.Fatalf("replica A, after n1's ack to it: %d of %d, want 1 of 1", a, n)
	}
	// Published on demand only: no page has counted on B yet, so A has nothing to publish.
	e.srv.mu.Lock()
	queued := len(e.srv.share.pending)
	e.srv.mu.Unlock()
	if queued != 0 || exists(t, st, prefixAck+"n1") {
		t.Fatalf("before any page counted on B: %d acks queued at A, nodeack/n1 in the store %v; want none",
			queued, exists(t, st, prefixAck+"n1"))
	}
	// B's page counts: 0 at first, and asks; A publishes n1's ack, and B counts it.
	if a, n := nodes(onB); a != 0 || n != 1 {
		t.Fatalf("replica B before A published: %d of %d, want 0 of 1", a, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, n := nodes(onB)
		if a == 1 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B still says %d of %d 10 s after n1 acknowledged to A, want 1 of 1", a, n)
		}
		time.Sleep(100 * time.Millisecond) // A publishes once a second (ackShareEvery)
	}
	// The published ack is authenticated: one written without the key file counts nowhere.
	write(t, st, prefixAck+"n1", []byte(`{"rev":999999999}`))
	if a, _ := nodes(onB); a != 0 {
		t.Errorf("with a forged published ack (and no ack to B): replica B says %d active, want 0", a)
	}
	// Removing the node removes its published ack.
	e.mustAdmin(200, "DELETE", "/v1/admin/nodes/n1", nil, nil)
	if exists(t, st, prefixAck+"n1") {
		t.Error("nodeack/n1 is still in the store after the node was removed")
	}
}

// exists says whether key is in the store.
func exists(t *testing.T, st kv.Store, key string) bool {
	t.Helper()
	found := false
	if err := st.View(context.Background(), func(_ int64, tx kv.Txn) error {
		_, err := tx.Get(key)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		found = err == nil
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// waitRev waits until srv's index has caught up with the store's revision.
func waitRev(t *testing.T, srv *Server, st kv.Store) {
	t.Helper()
	want := st.Rev()
	for deadline := time.Now().Add(10 * time.Second); srv.idx.revision() < want; {
		if time.Now().After(deadline) {
			t.Fatalf("the index did not reach revision %d", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPortalSessionsEndOnAdminChange: an administrator's disable of a token, reset and deletion
// of the user end the user's portal sessions (and no one else's).
func TestPortalSessionsEndOnAdminChange(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	signedIn := func(b *browser) bool { return b.get("/portal/tokens").url == "/portal/tokens" }
	ann, bob := e.browser(), e.browser()
	id, _, _ := e.addFirstToken(ann, e.signInMail(ann, "ann", "ann@example.org"), "")
	e.signInMail(bob, "bob", "bob@example.org")

	e.mustAdmin(200, "PATCH", "/v1/admin/users/ann/tokens/"+id, map[string]any{"state": "disabled"}, nil)
	if signedIn(ann) {
		t.Error("ann's session lives on after an administrator disabled her token")
	}
	if !signedIn(bob) {
		t.Fatal("bob's session ended with ann's")
	}
	ann = e.browser()
	e.signInMail(ann, "ann", "ann@example.org")
	if !signedIn(ann) {
		t.Fatal("ann cannot sign in again")
	}
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/reset", nil, nil)
	if signedIn(ann) {
		t.Error("ann's session lives on after an administrator's reset")
	}
	e.mustAdmin(200, "DELETE", "/v1/admin/users/bob", nil, nil)
	if signedIn(bob) {
		t.Error("bob's session lives on after his deletion")
	}
}
