package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

func TestSnapshotOrderCountDigest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	e.addUser("bob", "beta")
	e.addUser("cat", "alpha", "beta")
	for _, u := range []string{"ann", "ann", "bob", "cat"} {
		e.addToken(u)
	}
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/backup-codes", nil, nil)
	cred := e.addNode("login1.alpha", "alpha")

	rev, recs, d := e.snapshot(cred)
	if rev != e.store.Rev() {
		t.Errorf("snapshot revision = %d, want %d", rev, e.store.Rev())
	}
	// ann: 2 tokens + 10 codes, cat: 1 token; bob is beta only.
	if got, want := len(recs), 13; got != want {
		t.Errorf("snapshot has %d records, want %d", got, want)
	}
	for k, v := range recs {
		kind, user, _, err := syncframe.ParseKey(k)
		if err != nil || user == "bob" {
			t.Errorf("record %q in scope alpha (err %v)", k, err)
		}
		if kind == syncframe.KindToken {
			var tok token.Token
			if err := json.Unmarshal(v, &tok); err != nil || tok.Validate() != nil {
				t.Errorf("token %s does not decode and validate: %v", k, err)
			}
		}
	}
	// The index agrees with the snapshot.
	irev, count, digest, _ := e.srv.idx.view("alpha")
	if irev != rev || !d.Matches(count, digest) {
		t.Errorf("index alpha = rev %d %d %s; snapshot %d %d %s", irev, count, digest, rev, d.Count(), d.String())
	}
}

func TestWatchDeliversNewTokenFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	cred := e.addNode("n1", "alpha")
	n := e.follow(cred)
	n.syncTo(e.store.Rev()) // the first bookmark: caught up

	var lat []time.Duration
	for i := range 5 {
		start := time.Now()
		ti := e.addToken("ann")
		b := n.nextBatch()
		lat = append(lat, time.Since(start))
		if len(b.Frames) != 1 || b.Frames[0].Type != syncframe.Put || b.Frames[0].Key != syncframe.TokenKey("ann", ti.ID) {
			t.Fatalf("batch %d = %+v, want a put of token %s", i, b.Frames, ti.ID)
		}
		n.syncTo(b.Rev)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("admin write to node stream: median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)/2] > 500*time.Millisecond {
		t.Errorf("median latency %s, want a few ms", lat[len(lat)/2])
	}
}

func TestScopeChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	e.addUser("bob", "beta")
	tok := e.addToken("ann")
	e.addToken("bob")
	a := e.follow(e.addNode("na", "alpha"))
	b := e.follow(e.addNode("nb", "beta"))
	a.syncTo(e.store.Rev())
	b.syncTo(e.store.Rev())
	if _, ok := b.recs[syncframe.TokenKey("ann", tok.ID)]; ok {
		t.Fatal("node of scope beta has alpha's token")
	}

	e.mustAdmin(200, "PATCH", "/v1/admin/users/ann", map[string]any{"scopes": []string{"beta"}}, nil)
	rev := e.store.Rev()
	ba, bb := a.nextBatch(), b.nextBatch()
	key := syncframe.TokenKey("ann", tok.ID)
	if ba.Rev != rev || len(ba.Frames) != 1 || ba.Frames[0].Type != syncframe.Delete || ba.Frames[0].Key != key {
		t.Errorf("alpha batch = %+v, want a delete of %s at %d", ba, key, rev)
	}
	if bb.Rev != rev || len(bb.Frames) != 1 || bb.Frames[0].Type != syncframe.Put || bb.Frames[0].Key != key {
		t.Errorf("beta batch = %+v, want a put of %s at %d", bb, key, rev)
	}
	// Both nodes' digests agree with the bookmarks after it (checked in next).
	a.syncTo(rev)
	b.syncTo(rev)
	if len(a.recs) != 0 || len(b.recs) != 2 {
		t.Errorf("after the move alpha has %d records, beta %d; want 0 and 2", len(a.recs), len(b.recs))
	}
	// Adding alpha back: alpha gets a put; beta sees nothing but a bookmark.
	e.mustAdmin(200, "PATCH", "/v1/admin/users/ann", map[string]any{"scopes": []string{"alpha", "beta"}}, nil)
	if ba := a.nextBatch(); ba.Frames[0].Type != syncframe.Put {
		t.Errorf("alpha batch = %+v, want a put", ba)
	}
	b.syncTo(e.store.Rev())
	if b.rev != e.store.Rev() || len(b.recs) != 2 {
		t.Errorf("beta at %d with %d records, want %d with 2", b.rev, len(b.recs), e.store.Rev())
	}
}

func TestWatchGoneAfterCompact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cred := e.addNode("n1", "alpha")
	for _, u := range []string{"a", "b", "c"} {
		e.addUser(u, "alpha")
	}
	var out map[string]int64
	e.mustAdmin(200, "POST", "/v1/admin/compact", map[string]int{"keep": 1}, &out)
	if out["compacted"] != out["revision"]-1 {
		t.Errorf("compact = %v, want compacted = revision-1", out)
	}
	tests := []struct {
		name  string
		since int64
		want  int
	}{
		{"below compacted", 1, http.StatusGone},
		{"at compacted", out["compacted"], http.StatusOK},
		{"beyond the current revision", out["revision"] + 5, http.StatusGone},
		{"not a number", -1, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.nodeGet(cred, "/v1/sync/watch?mode=poll&timeout=10ms&since="+itoa(tt.since))
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("watch since %d = %d, want %d", tt.since, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestPollMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	cred := e.addNode("n1", "alpha")
	rev := e.store.Rev()
	// Nothing new: a bookmark after the timeout, then the end.
	start := time.Now()
	resp := e.nodeGet(cred, "/v1/sync/watch?mode=poll&timeout=200ms&since="+itoa(rev))
	w := syncframe.NewWatch(syncframe.NewReader(resp.Body), rev)
	if b, bm, err := w.Next(); err != nil || b != nil || bm == nil || bm.Rev != rev {
		t.Fatalf("poll = %v %v %v, want a bookmark at %d", b, bm, err, rev)
	}
	if _, _, err := w.Next(); err != io.EOF {
		t.Errorf("after the bookmark: %v, want EOF", err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("poll answered after %s, want it to wait for the timeout", d)
	}
	// News: the batch and a bookmark, at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(50 * time.Millisecond)
		e.srv.change(context.Background(), "test", "token.create", "x", "", func(x *txn) error {
			u, err := x.user("ann")
			if err != nil {
				return err
			}
			return x.putToken(u, token.Token{User: "ann", ID: "abcd", Name: "n", Algorithm: "SHA1", Digits: 6,
				Period: 30, Secret: make([]byte, 20), State: token.Active})
		})
	}()
	resp = e.nodeGet(cred, "/v1/sync/watch?mode=poll&timeout=10s&since="+itoa(rev))
	defer resp.Body.Close()
	defer func() { <-done }()
	w = syncframe.NewWatch(syncframe.NewReader(resp.Body), rev)
	if b, _, err := w.Next(); err != nil || b == nil || len(b.Frames) != 1 {
		t.Fatalf("poll = %v %v, want a batch", b, err)
	}
	if _, bm, err := w.Next(); err != nil || bm == nil {
		t.Fatalf("after the batch %v %v, want a bookmark", bm, err)
	}
}

func TestNodeAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{mtls: true})
	cred := e.addNode("n1", "alpha")
	e.addNode("n2", "beta")
	wrong := cred[:len(cred)-4] + "AAAA"
	tests := []struct {
		name string
		cred string
		path string
		want int
	}{
		{"no credential", "", "/v1/sync/snapshot", 401},
		{"wrong secret", wrong, "/v1/sync/snapshot", 401},
		{"unknown node", strings.Replace(cred, ".n1.", ".n9.", 1), "/v1/sync/snapshot", 401},
		{"not ptn1", "xyz", "/v1/sync/watch?since=0", 401},
		{"other scope", cred, "/v1/sync/snapshot?scope=beta", 403},
		{"own scope", cred, "/v1/sync/snapshot?scope=alpha", 200},
		{"watch other scope", cred, "/v1/sync/watch?since=0&scope=beta", 403},
		{"admin token is not a node credential", testAdminToken, "/v1/sync/snapshot", 401},
		{"status needs nothing", "", "/v1/status", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.nodeGet(tt.cred, tt.path)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
	t.Run("mTLS client certificate", func(t *testing.T) {
		pair, _, _ := e.ca.issue(t, "n1", false)
		c := e.newClient(&pair)
		resp, err := c.Get(e.ts.URL + "/v1/sync/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("snapshot with n1's certificate = %d, want 200", resp.StatusCode)
		}
		pair, _, _ = e.ca.issue(t, "stranger", false)
		resp, err = e.newClient(&pair).Get(e.ts.URL + "/v1/sync/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("snapshot with an unregistered CN = %d, want 401", resp.StatusCode)
		}
	})
	t.Run("client certificate of another CA", func(t *testing.T) {
		other := newCA(t, "other CA")
		pair, _, _ := other.issue(t, "n1", false)
		// Present it even though the server asks for its own CA's (a Go client would send none).
		c := e.newClient(nil)
		c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		}
		resp, err := c.Get(e.ts.URL + "/v1/sync/snapshot")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("snapshot with a certificate of another CA = %d, want a refused handshake", resp.StatusCode)
		}
		var ce *tls.CertificateVerificationError
		if !strings.Contains(err.Error(), "certificate") && !errors.As(err, &ce) {
			t.Errorf("error %v, want a TLS certificate error", err)
		}
	})
}

func TestRemovedNodeStreamClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cred := e.addNode("n1", "alpha")
	w, resp := e.watch(cred, e.store.Rev())
	defer resp.Body.Close()
	if _, bm, err := w.Next(); err != nil || bm == nil {
		t.Fatalf("first frame: %v %v, want a bookmark", bm, err)
	}
	start := time.Now()
	var out map[string]any
	e.mustAdmin(200, "DELETE", "/v1/admin/nodes/n1", nil, &out)
	if out["streams_closed"] != float64(1) {
		t.Errorf("DELETE node = %v, want streams_closed 1", out)
	}
	_, _, err := w.Next()
	if err == nil || !strings.Contains(err.Error(), "node_removed") {
		t.Fatalf("stream after removal: %v, want an error frame node_removed", err)
	}
	t.Logf("stream closed %s after the removal", time.Since(start))
	r2 := e.nodeGet(cred, "/v1/sync/snapshot")
	r2.Body.Close()
	if r2.StatusCode != 401 {
		t.Errorf("removed node's snapshot = %d, want 401", r2.StatusCode)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cred := e.addNode("n1", "alpha")
	w, resp := e.watch(cred, e.store.Rev())
	defer resp.Body.Close()
	if _, _, err := w.Next(); err != nil {
		t.Fatal(err)
	}
	e.srv.Shutdown()
	if _, _, err := w.Next(); err == nil || !strings.Contains(err.Error(), "shutting_down") {
		t.Errorf("stream after Shutdown: %v, want an error frame shutting_down", err)
	}
	r2 := e.nodeGet(cred, "/v1/sync/watch?since=0")
	r2.Body.Close()
	if r2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("watch after Shutdown = %d, want 503", r2.StatusCode)
	}
	e.ts.Close()
	e.store.Close()
	e.ts = nil
}

func TestAckAndNodeList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	e.addToken("ann")
	cred := e.addNode("n1", "alpha")
	rev, _, d := e.snapshot(cred)
	// The index follows the store in the background; an ack it has not caught up with yet gets no
	// verdict on its digest (DigestOK nil), so wait for it, bounded.
	for deadline := time.Now().Add(5 * time.Second); e.srv.idx.revision() < rev && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	post := func(body string) int {
		req, _ := http.NewRequest("POST", e.ts.URL+"/v1/sync/ack", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cred)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good, _ := json.Marshal(map[string]any{"rev": rev, "count": d.Count(), "digest": d.String(), "lag_ms": 3, "version": "t"})
	for _, tt := range []struct {
		name, body string
		want       int
	}{
		{"good", string(good), 204},
		{"unknown field", `{"rev":1,"x":2}`, 400},
		{"negative", `{"rev":-1}`, 400},
		{"not json", `rev=1`, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.body); got != tt.want {
				t.Errorf("POST ack %s = %d, want %d", tt.body, got, tt.want)
			}
		})
	}
	var nodes []registryapi.Node
	e.mustAdmin(200, "GET", "/v1/admin/nodes", nil, &nodes)
	if len(nodes) != 1 || nodes[0].AppliedRev != rev || nodes[0].DigestOK == nil || !*nodes[0].DigestOK ||
		nodes[0].LastContact.IsZero() || nodes[0].LagMS != 3 {
		t.Errorf("nodes = %+v, want n1 at %d with digest agreement", nodes, rev)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	var st map[string]any
	if code := e.do("GET", "/v1/status", "", nil, &st); code != 200 || st["revision"] != float64(e.store.Rev()) {
		t.Errorf("status = %d %v, want revision %d", code, st, e.store.Rev())
	}
}

// TestStreamFromStoreHistory: a stream far behind the in-memory log reads kv's history.
func TestStreamFromStoreHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	cred := e.addNode("n1", "alpha")
	for range 3 {
		e.addToken("ann")
	}
	// Empty the log as if it had rolled over.
	e.srv.idx.mu.Lock()
	e.srv.idx.log, e.srv.idx.logStart = nil, e.srv.idx.rev
	e.srv.idx.mu.Unlock()
	n := &node{t: t, recs: map[string][]byte{}}
	var resp *http.Response
	n.w, resp = e.watch(cred, 1)
	defer resp.Body.Close()
	n.syncTo(e.store.Rev())
	if len(n.recs) != 3 {
		t.Errorf("node from history has %d records, want 3", len(n.recs))
	}
}
