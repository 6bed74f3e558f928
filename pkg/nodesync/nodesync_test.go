package nodesync

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const testCredential = "ptn1.node1.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"

// model is the registry's view of the node's set, for building scripted streams.
type model map[string][]byte

func (m model) digest() *syncframe.Digest {
	d := &syncframe.Digest{}
	for k, v := range m {
		d.Add(k, v)
	}
	return d
}

func (m model) clone() model {
	c := model{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

func tokenValue(user, id, name string) []byte {
	b, err := json.Marshal(token.Token{User: user, ID: id, Name: name, Algorithm: totp.SHA1, Digits: 6, Period: 30,
		Secret: []byte("12345678901234567890"), State: token.Active, Created: time.Unix(1700000000, 0).UTC()})
	if err != nil {
		panic(err)
	}
	return b
}

// lines encodes frames as NDJSON.
func lines(frames ...syncframe.Frame) string {
	var buf bytes.Buffer
	w := syncframe.NewWriter(&buf)
	for _, f := range frames {
		if err := w.Write(f); err != nil {
			panic(err)
		}
	}
	return buf.String()
}

func snapshotBody(rev int64, m model) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	frames := []syncframe.Frame{{Type: syncframe.Begin, Rev: rev, Count: int64(len(m))}}
	for _, k := range keys {
		frames = append(frames, syncframe.Frame{Type: syncframe.Put, Rev: rev, Key: k, Value: m[k]})
	}
	d := m.digest()
	frames = append(frames, syncframe.Frame{Type: syncframe.End, Rev: rev, Count: d.Count(), Digest: d.String()})
	return lines(frames...)
}

func put(rev int64, key string, value []byte) syncframe.Frame {
	return syncframe.Frame{Type: syncframe.Put, Rev: rev, Key: key, Value: value}
}

func commit(rev, count int64) syncframe.Frame {
	return syncframe.Frame{Type: syncframe.Commit, Rev: rev, Count: count}
}

func bookmark(rev int64, m model) syncframe.Frame {
	d := m.digest()
	return syncframe.Frame{Type: syncframe.Bookmark, Rev: rev, Count: d.Count(), Digest: d.String()}
}

// reply is one scripted answer; hold keeps the stream open (after body) until the client goes;
// bare leaves out the epoch and interval headers (an answer from before the sync handlers).
type reply struct {
	status int
	body   string
	hold   bool
	bare   bool
}

// fakeRegistry serves scripted snapshot and watch answers, in order; when a script runs out it
// repeats the last snapshot and holds watches open without a frame.
type fakeRegistry struct {
	srv       *httptest.Server
	mu        sync.Mutex
	snapshots []reply
	watches   []reply
	nSnap     int
	snapAt    []time.Time // when each snapshot request arrived
	nWatch    int
	since     []string
	auth      []string
	acks      []registryapi.Ack
	used      []registryapi.UsedReport  // used reports taken
	usedFail  int                       // answer this many used reports with 503 first
	logins    []registryapi.LoginReport // login reports taken
	// loginStatus scripts the status of the next login reports (200 when it runs out); a 200
	// answers each claim refused by node:other and each failure with the count 7.
	loginStatus []int
	events      chan string
	// beforeWatch runs before the nth watch (from 1) is answered.
	beforeWatch func(n int)
	// epoch and interval, when set, are announced in the snapshot and watch answers' headers.
	epoch, interval string
}

// hello sets the headers the registry sends before any frame.
func (f *fakeRegistry) hello(w http.ResponseWriter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.epoch != "" {
		w.Header().Set(syncframe.EpochHeader, f.epoch)
	}
	if f.interval != "" {
		w.Header().Set(syncframe.BookmarkIntervalHeader, f.interval)
	}
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	f := &fakeRegistry{events: make(chan string, 1000)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sync/snapshot", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.snapAt = append(f.snapAt, time.Now())
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		rep := reply{status: 500, body: `{"error":"no snapshot scripted"}`}
		if len(f.snapshots) > 0 {
			rep = f.snapshots[min(f.nSnap, len(f.snapshots)-1)]
		}
		f.nSnap++
		n := f.nSnap
		f.mu.Unlock()
		if !rep.bare {
			f.hello(w)
		}
		f.serve(w, r, rep)
		f.events <- "snapshot#" + strconv.Itoa(n)
	})
	mux.HandleFunc("GET /v1/sync/watch", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.since = append(f.since, r.URL.Query().Get("since"))
		rep := reply{status: 200, hold: true}
		if f.nWatch < len(f.watches) {
			rep = f.watches[f.nWatch]
		}
		f.nWatch++
		n := f.nWatch
		f.mu.Unlock()
		if f.beforeWatch != nil {
			f.beforeWatch(n)
		}
		f.events <- "watch#" + strconv.Itoa(n) + " since=" + r.URL.Query().Get("since")
		if !rep.bare {
			f.hello(w)
		}
		f.serve(w, r, rep)
	})
	mux.HandleFunc("POST /v1/sync/ack", func(w http.ResponseWriter, r *http.Request) {
		var a registryapi.Ack
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		f.acks = append(f.acks, a)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		f.events <- fmt.Sprintf("ack rev=%d", a.Rev)
	})
	mux.HandleFunc("POST /v1/sync/used", func(w http.ResponseWriter, r *http.Request) {
		var u registryapi.UsedReport
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&u); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		fail := f.usedFail > 0
		if fail {
			f.usedFail--
		} else {
			f.used = append(f.used, u)
		}
		f.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"scripted failure"}`)
			f.events <- "used failed"
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"deleted":%d,"revision":9}`, len(u.Used))
		f.events <- fmt.Sprintf("used n=%d", len(u.Used))
	})
	mux.HandleFunc("POST "+registryapi.PathSyncLogins, func(w http.ResponseWriter, r *http.Request) {
		var q registryapi.LoginReport
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		status := 200
		if len(f.loginStatus) > 0 {
			status, f.loginStatus = f.loginStatus[0], f.loginStatus[1:]
		}
		if status == 200 {
			f.logins = append(f.logins, q)
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != 200 {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":"scripted"}`)
			f.events <- fmt.Sprintf("logins status=%d n=%d", status, len(q.Events))
			return
		}
		var a registryapi.LoginAnswer
		for _, e := range q.Events {
			if e.Kind == token.EventClaim {
				a.Results = append(a.Results, registryapi.LoginResult{By: "node:other", At: e.At})
			} else {
				a.Results = append(a.Results, registryapi.LoginResult{Failures: 7})
			}
		}
		json.NewEncoder(w).Encode(a)
		f.events <- fmt.Sprintf("logins n=%d", len(q.Events))
	})
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request, rep reply) {
	if rep.status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, rep.body)
	w.(http.Flusher).Flush()
	if rep.hold {
		<-r.Context().Done()
	}
}

func (f *fakeRegistry) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

// waitEvent waits for an event starting with prefix, and returns it.
func (f *fakeRegistry) waitEvent(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-f.events:
			if strings.HasPrefix(e, prefix) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %q event within 10s", prefix)
		}
	}
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	dir   string
	sync  config.Sync
	clock *fakeClock
	log   *bytes.Buffer
	logMu *sync.Mutex
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func newEnv(t *testing.T, f *fakeRegistry) *env {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(root, "ca.pem")
	cred := filepath.Join(root, "node.credential")
	writeFile(t, ca, f.caPEM(), 0o644)
	writeFile(t, cred, []byte(testCredential+"\n"), 0o600)
	return &env{dir: dir, sync: config.Sync{Registry: config.URLs{f.srv.URL}, CAFile: ca, CredentialFile: cred},
		clock: &fakeClock{t: time.Unix(1700000000, 0)}, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) options() Options {
	return Options{
		Sync:             e.sync,
		Store:            store.Options{Dir: e.dir, Timeout: time.Second},
		BookmarkInterval: 10 * time.Second,
		MinBackoff:       time.Millisecond,
		MaxBackoff:       5 * time.Millisecond,
		Now:              e.clock.Now,
		Rand:             func() float64 { return 0.5 },
		Log:              slog.New(slog.NewTextHandler(lockedWriter{e.logMu, e.log}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:          "test",
	}
}

func (e *env) tokens() *store.Tokens {
	return store.NewTokens(store.Options{Dir: e.dir, Timeout: time.Second})
}

// start runs a Syncer until the test ends.
func (e *env) start(t *testing.T, o Options) *Syncer {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
		if t.Failed() {
			e.logMu.Lock()
			t.Logf("syncer log:\n%s", e.log.String())
			e.logMu.Unlock()
		}
	})
	return s
}

// checkStore compares tokens.db with the model: records, meta and a recomputed digest.
func checkStore(t *testing.T, db *store.Tokens, want model, rev uint64) {
	t.Helper()
	d, m, err := db.Digest()
	if err != nil {
		t.Fatalf("Digest() = %v", err)
	}
	w := want.digest()
	if !d.Matches(w.Count(), w.String()) || !d.Matches(m.Count, m.Digest) || m.Revision != rev {
		t.Errorf("tokens.db: records %d/%s, meta %d/%s at revision %d; want %d/%s at %d",
			d.Count(), d, m.Count, m.Digest, m.Revision, w.Count(), w, rev)
	}
}

var base = model{
	"t/alice/a": tokenValue("alice", "a", "phone"),
	"t/bob/b":   tokenValue("bob", "b", "phone"),
}

func TestSyncSnapshotThenWatch(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	next := base.clone()
	next["t/carol/c"] = tokenValue("carol", "c", "laptop")
	delete(next, "t/bob/b")
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	f.watches = []reply{{status: 200, hold: true, body: lines(
		put(6, "t/carol/c", next["t/carol/c"]), syncframe.Frame{Type: syncframe.Delete, Rev: 6, Key: "t/bob/b"}, commit(6, 2),
		bookmark(8, next))}}
	e := newEnv(t, f)
	s := e.start(t, e.options())
	f.waitEvent(t, "snapshot#1")
	if ev := f.waitEvent(t, "watch#1"); ev != "watch#1 since=5" {
		t.Errorf("first watch: %s, want since=5", ev)
	}
	f.waitEvent(t, "ack rev=8")
	// The clock has not moved since the batch wrote last contact, so the bookmark's revision 8
	// is acked but not yet written (touches are rate-limited).
	checkStore(t, e.tokens(), next, 6)
	f.mu.Lock()
	for i, a := range f.auth {
		if a != "Bearer "+testCredential {
			t.Errorf("request %d Authorization = %q", i, a)
		}
	}
	f.mu.Unlock()
	u, err := e.tokens().ReadUser("carol")
	if err != nil || len(u.Tokens) != 1 || u.Tokens[0].Name != "laptop" {
		t.Errorf("ReadUser(carol) = %+v, %v", u, err)
	}
	var buf bytes.Buffer
	s.Metrics().WriteTo(&buf)
	for _, want := range []string{
		"pam_totp_sync_applied_revision 6\n", "pam_totp_sync_registry_revision 8\n", "pam_totp_sync_tokens 2\n",
		"pam_totp_sync_connected 1\n", `pam_totp_sync_resyncs_total{reason="no_store"} 1` + "\n",
		"pam_totp_sync_apply_seconds_count 1\n", "pam_totp_sync_staleness_seconds 0\n",
		"pam_totp_sync_digest_mismatches_total 0\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

func TestSyncTouchesAtBookmarks(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	e := newEnv(t, f)
	// One stream per bookmark, so the test sets the clock between them.
	f.watches = []reply{{status: 200, body: lines(bookmark(7, base))}, {status: 200, body: lines(bookmark(9, base))}}
	f.beforeWatch = func(n int) {
		if n == 2 {
			e.clock.Add(time.Minute) // a touch is due at the second bookmark, not the first
		}
	}
	e.start(t, e.options())
	if ev := f.waitEvent(t, "watch#2"); ev != "watch#2 since=5" {
		t.Errorf("%s, want since=5: a bookmark right after the snapshot must not write", ev)
	}
	if ev := f.waitEvent(t, "watch#3"); ev != "watch#3 since=9" {
		t.Errorf("%s, want since=9", ev)
	}
	m, err := e.tokens().Meta()
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != 9 || !m.LastContact.Equal(e.clock.Now()) {
		t.Errorf("meta after bookmarks = revision %d, last contact %v; want 9, %v", m.Revision, m.LastContact, e.clock.Now())
	}
}

func TestSyncRejectsBadStreams(t *testing.T) {
	t.Parallel()
	good := tokenValue("carol", "c", "laptop")
	mallory := tokenValue("mallory", "c", "laptop")
	changed := base.clone()
	changed["t/alice/a"] = tokenValue("alice", "a", "evil")
	tests := []struct {
		name string
		body string
	}{
		{name: "truncated inside a batch", body: lines(put(6, "t/carol/c", good))},
		{name: "truncated line", body: strings.TrimSuffix(lines(put(6, "t/carol/c", good), commit(6, 1)), "\n")},
		{name: "reordered revisions", body: lines(put(7, "t/carol/c", good), put(6, "t/dave/d", tokenValue("dave", "d", "x")), commit(7, 2))},
		{name: "commit count disagrees", body: lines(put(6, "t/carol/c", good), commit(6, 2))},
		{name: "commit of another revision", body: lines(put(6, "t/carol/c", good), commit(7, 1))},
		{name: "duplicated batch", body: lines(put(5, "t/alice/a", changed["t/alice/a"]), commit(5, 1), bookmark(5, base))},
		{name: "older batch", body: lines(put(3, "t/alice/a", changed["t/alice/a"]), commit(3, 1), bookmark(5, base))},
		{name: "older bookmark", body: lines(bookmark(4, base))},
		{name: "value of another user", body: lines(put(6, "t/carol/c", mallory), commit(6, 1))},
		{name: "unknown frame field", body: `{"type":"put","rev":6,"key":"t/carol/c","value":` + string(good) + `,"extra":1}` + "\n" + lines(commit(6, 1))},
		{name: "snapshot frame in a watch", body: lines(syncframe.Frame{Type: syncframe.Begin, Rev: 6})},
		{name: "oversized line", body: `{"type":"put","rev":6,"key":"t/carol/c","value":{"name":"` + strings.Repeat("x", syncframe.MaxLine) + `"}}` + "\n"},
		{name: "error frame", body: lines(syncframe.Frame{Type: syncframe.Error, Code: "shutting_down", Message: "bye"})},
		{name: "empty stream", body: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRegistry(t)
			f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
			f.watches = []reply{{status: 200, body: tt.body}}
			e := newEnv(t, f)
			s := e.start(t, e.options())
			f.waitEvent(t, "watch#1")
			// The client drops the stream and comes back from the same revision.
			if ev := f.waitEvent(t, "watch#2"); ev != "watch#2 since=5" {
				t.Errorf("reconnect: %s, want since=5", ev)
			}
			checkStore(t, e.tokens(), base, 5)
			f.mu.Lock()
			if f.nSnap != 1 {
				t.Errorf("%d snapshots, want 1 (a bad stream is no reason to resync)", f.nSnap)
			}
			f.mu.Unlock()
			if n := s.Metrics().Resyncs(ReasonDigestMismatch); n != 0 {
				t.Errorf("digest mismatches = %d", n)
			}
		})
	}
}

func TestSyncResyncs(t *testing.T) {
	t.Parallel()
	later := base.clone()
	later["t/dave/d"] = tokenValue("dave", "d", "x")
	tests := []struct {
		name   string
		watch  reply
		reason string
	}{
		{name: "410 gone", watch: reply{status: http.StatusGone, body: `{"error":"revision 5 compacted"}`}, reason: ReasonCompacted},
		{name: "compacted error frame", watch: reply{status: 200, body: lines(syncframe.Frame{Type: syncframe.Error, Code: "compacted", Message: "x"})}, reason: ReasonCompacted},
		{name: "digest mismatch at a bookmark", watch: reply{status: 200, body: lines(bookmark(6, later))}, reason: ReasonDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRegistry(t)
			f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}, {status: 200, body: snapshotBody(12, later)}}
			f.watches = []reply{tt.watch}
			e := newEnv(t, f)
			s := e.start(t, e.options())
			f.waitEvent(t, "snapshot#2")
			if ev := f.waitEvent(t, "watch#2"); ev != "watch#2 since=12" {
				t.Errorf("after the resync: %s, want since=12", ev)
			}
			checkStore(t, e.tokens(), later, 12)
			if n := s.Metrics().Resyncs(tt.reason); n != 1 {
				t.Errorf("resyncs{%s} = %d, want 1", tt.reason, n)
			}
			var buf bytes.Buffer
			s.Metrics().WriteTo(&buf)
			wantMismatch := "pam_totp_sync_digest_mismatches_total 0\n"
			if tt.reason == ReasonDigestMismatch {
				wantMismatch = "pam_totp_sync_digest_mismatches_total 1\n"
			}
			if !strings.Contains(buf.String(), wantMismatch) {
				t.Errorf("metrics lack %q", wantMismatch)
			}
		})
	}
}

func TestSyncBadSnapshotSwitchesNothing(t *testing.T) {
	t.Parallel()
	full := snapshotBody(5, base)
	tests := []struct {
		name string
		body string
	}{
		{name: "truncated", body: full[:strings.LastIndex(full[:len(full)-1], "\n")+1]},
		{name: "wrong digest", body: strings.Replace(full, base.digest().String(), strings.Repeat("0", 64), 1)},
		{name: "keys out of order", body: lines(syncframe.Frame{Type: syncframe.Begin, Rev: 5, Count: 2},
			put(5, "t/bob/b", base["t/bob/b"]), put(5, "t/alice/a", base["t/alice/a"]), bookmark(5, base))},
		{name: "invalid value", body: snapshotBody(5, model{"t/alice/a": tokenValue("bob", "a", "x")})},
		{name: "server error", body: "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRegistry(t)
			first := reply{status: 200, body: tt.body}
			if tt.body == "500" {
				first = reply{status: 500, body: `{"error":"boom"}`}
			}
			f.snapshots = []reply{first, {status: 200, body: full}}
			e := newEnv(t, f)
			e.start(t, e.options())
			f.waitEvent(t, "snapshot#1")
			if _, err := e.tokens().Meta(); !errors.Is(err, store.ErrNoStore) {
				t.Errorf("after a bad snapshot, Meta() = %v, want ErrNoStore", err)
			}
			f.waitEvent(t, "snapshot#2")
			f.waitEvent(t, "watch#1 since=5")
			checkStore(t, e.tokens(), base, 5)
			if left, _ := filepath.Glob(filepath.Join(e.dir, ".tokens.db.staging-*")); len(left) != 0 {
				t.Errorf("staging files left: %v", left)
			}
		})
	}
}

func TestSyncIdleStreamReconnects(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	e := newEnv(t, f)
	o := e.options()
	o.BookmarkInterval = 20 * time.Millisecond // nothing for 60 ms: reconnect
	e.start(t, o)
	f.waitEvent(t, "watch#1 since=5")
	f.waitEvent(t, "watch#2 since=5")
	e.wantLogged(t, "stream idle")
}

// wantLogged fails the test unless the syncer's log holds sub.
func (e *env) wantLogged(t *testing.T, sub string) {
	t.Helper()
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if !strings.Contains(e.log.String(), sub) {
		t.Errorf("log does not say %q:\n%s", sub, e.log.String())
	}
}

func TestSyncRefusedTransport(t *testing.T) {
	t.Parallel()
	otherCA := selfSignedCA(t)
	tests := []struct {
		name    string
		mangle  func(t *testing.T, e *env, f *fakeRegistry)
		status  int
		wantErr string
		is      error
	}{
		{name: "wrong CA", mangle: func(t *testing.T, e *env, f *fakeRegistry) {
			writeFile(t, e.sync.CAFile, otherCA, 0o644)
		}, wantErr: "certificate"},
		{name: "401", status: http.StatusUnauthorized, wantErr: "401", is: ErrRefused},
		{name: "403", status: http.StatusForbidden, wantErr: "403", is: ErrRefused},
		{name: "credential removed after start", mangle: func(t *testing.T, e *env, f *fakeRegistry) {}, wantErr: "credential_file", is: ErrCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRegistry(t)
			f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
			if tt.status != 0 {
				f.snapshots = []reply{{status: tt.status, body: `{"error":"no such node"}`}}
			}
			e := newEnv(t, f)
			if tt.mangle != nil {
				tt.mangle(t, e, f)
			}
			s, err := New(e.options())
			if err != nil {
				t.Fatal(err)
			}
			defer s.client.close()
			if tt.name == "credential removed after start" {
				os.Remove(e.sync.CredentialFile)
			}
			_, err = s.cycle(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("cycle() = %v, want an error with %q", err, tt.wantErr)
			}
			if strings.Contains(fmt.Sprint(err), testCredential) {
				t.Errorf("error shows the credential: %v", err)
			}
			if _, err := e.tokens().Meta(); !errors.Is(err, store.ErrNoStore) {
				t.Errorf("tokens.db after a refused sync: %v", err)
			}
			if tt.name == "wrong CA" {
				f.mu.Lock()
				if f.nSnap != 0 {
					t.Errorf("the registry got %d requests through a wrong CA", f.nSnap)
				}
				f.mu.Unlock()
			}
		})
	}
}

func TestNewChecksFiles(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	tests := []struct {
		name   string
		mangle func(t *testing.T, e *env)
		is     error
		want   string
	}{
		{name: "missing credential file", mangle: func(t *testing.T, e *env) { os.Remove(e.sync.CredentialFile) },
			is: ErrCredential, want: "no such file"},
		{name: "credential readable by others", mangle: func(t *testing.T, e *env) { os.Chmod(e.sync.CredentialFile, 0o644) },
			is: ErrCredential, want: "mode"},
		{name: "credential is a symlink", mangle: func(t *testing.T, e *env) {
			real := e.sync.CredentialFile + ".real"
			os.Rename(e.sync.CredentialFile, real)
			os.Symlink(real, e.sync.CredentialFile)
		}, is: ErrCredential, want: "symlink"},
		{name: "empty credential", mangle: func(t *testing.T, e *env) { writeFile(t, e.sync.CredentialFile, []byte("\n"), 0o600) },
			is: ErrCredential, want: "empty"},
		{name: "missing CA", mangle: func(t *testing.T, e *env) { os.Remove(e.sync.CAFile) }, is: ErrCA, want: "no such file"},
		{name: "CA without a certificate", mangle: func(t *testing.T, e *env) { writeFile(t, e.sync.CAFile, []byte("junk"), 0o644) },
			is: ErrCA, want: "no PEM"},
		{name: "CA writable by others", mangle: func(t *testing.T, e *env) { os.Chmod(e.sync.CAFile, 0o666) }, is: ErrCA, want: "mode"},
		{name: "mTLS needs no credential", mangle: func(t *testing.T, e *env) {
			os.Remove(e.sync.CredentialFile)
			e.sync.ClientCert, e.sync.ClientKey = writeClientPair(t, f, filepath.Dir(e.sync.CAFile))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, f)
			tt.mangle(t, e)
			s, err := New(e.options())
			if err == nil {
				s.client.close()
			}
			if cerr := CheckFiles(e.sync); (cerr == nil) != (err == nil) {
				t.Errorf("CheckFiles() = %v, New() = %v: they disagree", cerr, err)
			}
			if tt.is == nil {
				if err != nil {
					t.Errorf("New() = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v, want %v mentioning %q", err, tt.is, tt.want)
			}
		})
	}
}

// writeClientPair writes the test server's own certificate and key as a client pair (enough to
// load; the fake registry does not ask for client certificates).
func writeClientPair(t *testing.T, f *fakeRegistry, dir string) (cert, key string) {
	t.Helper()
	c := f.srv.TLS.Certificates[0]
	cert, key = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writeFile(t, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return cert, key
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rand float64
		want []time.Duration
	}{
		{name: "no jitter", rand: 0.5, want: []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
			8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{name: "lowest jitter", rand: 0, want: []time.Duration{400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}},
		{name: "highest jitter", rand: 0.999999, want: []time.Duration{599999800 * time.Nanosecond, 1199999600 * time.Nanosecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2, Rand: func() float64 { return tt.rand }}
			for i, want := range tt.want {
				if got := b.Next(); got != want {
					t.Errorf("Next() #%d = %v, want %v", i+1, got, want)
				}
			}
			b.Reset()
			if got := b.Next(); got != tt.want[0] {
				t.Errorf("Next() after Reset = %v, want %v", got, tt.want[0])
			}
		})
	}
	// With real randomness every delay stays within ±20 % of its base, and they differ.
	b := Backoff{Min: time.Second, Max: time.Second, Jitter: 0.2, Rand: rand.Float64}
	seen := map[time.Duration]bool{}
	for range 50 {
		d := b.Next()
		if d < 800*time.Millisecond || d >= 1200*time.Millisecond {
			t.Errorf("Next() = %v, outside 1s ± 20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 jittered delays took only %d values", len(seen))
	}
}

func TestRunBacksOffOnErrors(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 503, body: `{"error":"busy"}`}}
	e := newEnv(t, f)
	o := e.options()
	o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 40*time.Millisecond
	e.start(t, o)
	for range 5 {
		f.waitEvent(t, "snapshot#")
	}
	f.mu.Lock()
	at := f.snapAt
	f.mu.Unlock()
	// Gaps between the requests' arrivals of about 10, 20, 40, 40 ms (± jitter, plus request time).
	for i, want := range []time.Duration{10, 20, 40, 40} {
		if gap := at[i+1].Sub(at[i]); gap < want*time.Millisecond*8/10 {
			t.Errorf("gap %d = %v, want at least %v", i+1, gap, want*time.Millisecond*8/10)
		}
	}
}

func TestSecondSyncerRefused(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	e := newEnv(t, f)
	e.start(t, e.options())
	f.waitEvent(t, "watch#1")
	s2, err := New(e.options())
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Run(context.Background()); !errors.Is(err, store.ErrWriterBusy) {
		t.Errorf("second Run() = %v, want ErrWriterBusy", err)
	}
}

func TestRunRemovesStagingLeftovers(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	e := newEnv(t, f)
	left := filepath.Join(e.dir, ".tokens.db.staging-123")
	writeFile(t, left, []byte("half a database"), 0o600)
	e.start(t, e.options())
	f.waitEvent(t, "watch#1")
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("leftover staging file: %v", err)
	}
}

// syncedNode starts a syncer against a fake registry, waits until it watches after a snapshot
// at revision 5, and returns the registry, the syncer's environment and a node config for it.
func syncedNode(t *testing.T) (*fakeRegistry, *env, config.Config) {
	t.Helper()
	f := newFakeRegistry(t)
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	e := newEnv(t, f)
	e.start(t, e.options())
	f.waitEvent(t, "watch#1")
	cfg := config.Default()
	cfg.Store.Dir, cfg.Sync = e.dir, e.sync
	return f, e, cfg
}

func TestReadStatus(t *testing.T) {
	t.Parallel()
	f, e, cfg := syncedNode(t)
	cfg.Sync.MaxOffline = time.Minute
	tests := []struct {
		name      string
		verify    bool
		at        time.Duration
		wantStale bool
	}{
		{name: "fresh", at: 10 * time.Second},
		{name: "stale", at: 2 * time.Minute, wantStale: true},
		{name: "verify", verify: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ReadStatus(&cfg, tt.verify, e.clock.Now().Add(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			if st.Revision != 5 || st.Count != 2 || st.Digest != base.digest().String() || st.Stale != tt.wantStale ||
				st.Staleness != tt.at.Seconds() || st.Source != f.srv.URL {
				t.Errorf("ReadStatus() = %+v", st)
			}
			if tt.verify && (!st.Verified || !st.VerifyOK || st.VerifiedCount != 2) {
				t.Errorf("ReadStatus(verify) = %+v", st)
			}
		})
	}
}

// TestReadStatusVerify: --verify compares the records with meta's synced set on a node following
// a registry (a record written outside the sync is a mismatch), and on a standalone node, whose
// meta holds no synced set, reads every record back without comparing and is never stale.
func TestReadStatusVerify(t *testing.T) {
	t.Parallel()
	putLocal := func(t *testing.T, dir string) {
		t.Helper()
		var tok token.Token
		if err := json.Unmarshal(tokenValue("carol", "c1", "phone"), &tok); err != nil {
			t.Fatal(err)
		}
		if err := store.NewTokens(store.Options{Dir: dir, Timeout: time.Second}).Update(func(x *store.TokensTx) error {
			return x.PutToken(tok)
		}); err != nil {
			t.Fatal(err)
		}
	}
	synced := func(t *testing.T) config.Config { _, _, cfg := syncedNode(t); return cfg }
	tests := []struct {
		name         string
		setup        func(t *testing.T) config.Config
		wantCount    int64
		wantCompared bool
		wantOK       bool
	}{
		{name: "registry node, records as synced", setup: synced, wantCount: 2, wantCompared: true, wantOK: true},
		{name: "registry node, a record written outside the sync", setup: func(t *testing.T) config.Config {
			cfg := synced(t)
			putLocal(t, cfg.Store.Dir)
			return cfg
		}, wantCount: 3, wantCompared: true},
		{name: "standalone node", setup: func(t *testing.T) config.Config {
			cfg := config.Default()
			cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
			if err := os.Mkdir(cfg.Store.Dir, 0o700); err != nil {
				t.Fatal(err)
			}
			putLocal(t, cfg.Store.Dir)
			return cfg
		}, wantCount: 1, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.setup(t)
			cfg.Sync.MaxOffline = time.Minute
			st, err := ReadStatus(&cfg, true, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !st.Verified || st.VerifiedCount != tt.wantCount || st.Compared != tt.wantCompared || st.VerifyOK != tt.wantOK {
				t.Errorf("ReadStatus(verify) = verified %v, count %d, compared %v, ok %v; want true, %d, %v, %v",
					st.Verified, st.VerifiedCount, st.Compared, st.VerifyOK, tt.wantCount, tt.wantCompared, tt.wantOK)
			}
			if wantStale := tt.wantCompared; st.Stale != wantStale { // the fake clock's last contact is long past
				t.Errorf("ReadStatus(verify).Stale = %v, want %v", st.Stale, wantStale)
			}
		})
	}
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000100, 0)
	m := NewMetrics(func() time.Time { return now }, `v1"x`)
	var buf bytes.Buffer
	m.WriteTo(&buf)
	if !strings.Contains(buf.String(), "pam_totp_sync_staleness_seconds +Inf\n") {
		t.Errorf("never-contacted staleness is not +Inf:\n%s", buf.String())
	}
	m.setStore(7, 3, time.Unix(1700000000, 0))
	m.observeApply(3 * time.Millisecond)
	m.observeApply(2 * time.Second)
	m.resync(ReasonCompacted)
	m.ObserveLogin("success", 4*time.Millisecond)
	m.ObserveLogin("auth_err", 3*time.Second)
	buf.Reset()
	m.WriteTo(&buf)
	for _, want := range []string{
		`pam_totp_sync_build_info{version="v1\"x"} 1`, "pam_totp_sync_staleness_seconds 100",
		`pam_totp_sync_apply_seconds_bucket{le="0.005"} 1`, `pam_totp_sync_apply_seconds_bucket{le="2.5"} 2`,
		`pam_totp_sync_apply_seconds_bucket{le="+Inf"} 2`, "pam_totp_sync_apply_seconds_count 2",
		`pam_totp_sync_resyncs_total{reason="compacted"} 1`, "pam_totp_sync_last_contact_timestamp_seconds 1.7e+09",
		`pam_totp_verifier_logins_total{verdict="success"} 1`, `pam_totp_verifier_logins_total{verdict="auth_err"} 1`,
		`pam_totp_verifier_logins_total{verdict="maxtries"} 0`, `pam_totp_verifier_exchange_seconds_bucket{le="0.005"} 1`,
		`pam_totp_verifier_exchange_seconds_bucket{le="5"} 2`, "pam_totp_verifier_exchange_seconds_count 2",
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
	// Every sample line is NAME[{labels}] VALUE, and every family has HELP and TYPE.
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) != 2 || !strings.HasPrefix(f[0], "pam_totp_sync_") && !strings.HasPrefix(f[0], "pam_totp_verifier_") {
			t.Errorf("bad sample line %q", line)
		}
	}
}

// selfSignedCA makes a CA certificate for 127.0.0.1 that did not sign the test server's (httptest
// servers all share one certificate, so another httptest server would not do).
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
