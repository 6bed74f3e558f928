package nodesync

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

const (
	epoch1 = "00112233445566778899aabbccddeeff"
	epoch2 = "ffeeddccbbaa99887766554433221100"
)

// TestSyncEpochChangeResyncsOnce: a registry that starts serving another store epoch (a migrated
// store, whose revisions mean something else) costs exactly one full resync, reason epoch.
func TestSyncEpochChangeResyncsOnce(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.epoch = epoch1
	later := base.clone()
	later["t/dave/d"] = tokenValue("dave", "d", "x")
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}, {status: 200, body: snapshotBody(3, later)}}
	f.watches = []reply{{status: 200}} // the first stream ends at once
	f.beforeWatch = func(n int) {
		if n == 2 {
			f.mu.Lock()
			f.epoch = epoch2
			f.mu.Unlock()
		}
	}
	e := newEnv(t, f)
	s := e.start(t, e.options())
	f.waitEvent(t, "snapshot#2")
	if ev := f.waitEvent(t, "watch#3"); ev != "watch#3 since=3" {
		t.Errorf("after the resync: %s, want since=3 (the new store's revision, though lower)", ev)
	}
	checkStore(t, e.tokens(), later, 3)
	if m, _ := e.tokens().Meta(); m.Epoch != epoch2 {
		t.Errorf("meta epoch = %q, want %q", m.Epoch, epoch2)
	}
	if n := s.Metrics().Resyncs(ReasonEpoch); n != 1 {
		t.Errorf("resyncs{epoch} = %d, want 1", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nSnap != 2 {
		t.Errorf("snapshots = %d, want 2 (the first sync and one resync)", f.nSnap)
	}
}

// TestSyncErrorWithoutEpoch: an error answer that comes before the sync handlers (a 503 of the
// credential check while the store is down) carries no epoch, and is no reason to resync.
func TestSyncErrorWithoutEpoch(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	f.epoch = epoch1
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	f.watches = []reply{{status: http.StatusServiceUnavailable, body: `{"error":"store down"}`, bare: true}}
	e := newEnv(t, f)
	s := e.start(t, e.options())
	f.waitEvent(t, "watch#2 since=5")
	if n := s.Metrics().Resyncs(ReasonEpoch); n != 0 {
		t.Errorf("resyncs{epoch} = %d after a 503 without an epoch, want 0", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nSnap != 1 {
		t.Errorf("snapshots = %d, want 1", f.nSnap)
	}
}

// twoReplicas starts two fake replicas of one store (same epoch and records) and a node
// configured with both, A first.
func twoReplicas(t *testing.T) (a, b *fakeRegistry, e *env) {
	t.Helper()
	a, b = newFakeRegistry(t), newFakeRegistry(t)
	for _, f := range []*fakeRegistry{a, b} {
		f.epoch = epoch1
		f.snapshots = []reply{{status: 200, body: snapshotBody(5, base)}}
	}
	e = newEnv(t, a) // httptest servers share one certificate: A's CA file serves B too
	e.sync.Registry = config.URLs{a.srv.URL, b.srv.URL}
	return a, b, e
}

// checkMoved checks that the node follows b after one fail-over, without a second snapshot.
func checkMoved(t *testing.T, s *Syncer, a, b *fakeRegistry, e *env) {
	t.Helper()
	if ev := b.waitEvent(t, "watch#1"); ev != "watch#1 since=5" {
		t.Errorf("on replica B: %s, want since=5 (resumed, no resync)", ev)
	}
	if n := s.Metrics().Failovers(); n != 1 {
		t.Errorf("failovers = %d, want 1", n)
	}
	if u, _ := s.Metrics().Replica(); u != b.srv.URL {
		t.Errorf("replica followed = %q, want B %q", u, b.srv.URL)
	}
	var buf bytes.Buffer
	s.Metrics().WriteTo(&buf)
	if want := `pam_totp_sync_replica_info{url="` + b.srv.URL + `"} 1`; !strings.Contains(buf.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
	if want := "pam_totp_sync_failovers_total 1\n"; !strings.Contains(buf.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
	b.mu.Lock()
	nSnap := b.nSnap
	b.mu.Unlock()
	if nSnap != 0 || s.Metrics().Resyncs(ReasonEpoch) != 0 || s.Metrics().Resyncs(ReasonSource) != 0 {
		t.Errorf("B served %d snapshots, resyncs epoch %d source %d; want none", nSnap,
			s.Metrics().Resyncs(ReasonEpoch), s.Metrics().Resyncs(ReasonSource))
	}
	m, err := e.tokens().Meta()
	if err != nil || m.Epoch != epoch1 || m.Revision != 5 {
		t.Errorf("meta = %+v, %v; want epoch %s at revision 5", m, err, epoch1)
	}
}

// TestSyncFailoverOnDeadReplica: the replica the node follows goes away; the node moves to the
// next one at once and resumes from its revision.
func TestSyncFailoverOnDeadReplica(t *testing.T) {
	t.Parallel()
	a, b, e := twoReplicas(t)
	s := e.start(t, e.options())
	a.waitEvent(t, "watch#1 since=5")
	a.srv.CloseClientConnections()
	a.srv.Close()
	checkMoved(t, s, a, b, e)
}

// TestSyncFailoverOnStalledStream: a replica that keeps the connection but sends nothing for
// three of the bookmark intervals it announced is left for the next one.
func TestSyncFailoverOnStalledStream(t *testing.T) {
	t.Parallel()
	a, b, e := twoReplicas(t)
	a.interval = "1s" // the node's default is 10 s: only the announced interval makes this quick
	s := e.start(t, e.options())
	a.waitEvent(t, "watch#1 since=5")
	start := time.Now()
	checkMoved(t, s, a, b, e)
	if took := time.Since(start); took < 2*time.Second || took > 8*time.Second {
		t.Errorf("moved after %s, want about 3 s (three announced intervals)", took)
	}
	e.wantLogged(t, "stream idle")
}

// TestClientMovesOnlyWhenNotTaken: a request moves to the next replica only when the followed
// one cannot have acted on it (no connection, 503); any other answer is returned as it is.
func TestClientMovesOnlyWhenNotTaken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		aStatus  int // 0: A is down
		wantAt   string
		wantCode int
	}{
		{name: "connection refused", wantAt: "B", wantCode: 200},
		{name: "503", aStatus: http.StatusServiceUnavailable, wantAt: "B", wantCode: 200},
		{name: "500 may have been applied", aStatus: http.StatusInternalServerError, wantAt: "A", wantCode: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b, e := twoReplicas(t)
			if tt.aStatus == 0 {
				a.srv.Close()
			} else {
				a.loginStatus = []int{tt.aStatus}
			}
			c, err := newClient(e.sync, time.Second, "test", e.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			resp, err := c.doMoving(context.Background(), http.MethodPost, registryapi.PathSyncLogins, nil, []byte(`{"events":[]}`))
			if err != nil {
				t.Fatalf("doMoving() = %v", err)
			}
			resp.Body.Close()
			_, at, _ := c.current()
			want := map[string]string{"A": a.srv.URL, "B": b.srv.URL}[tt.wantAt]
			if resp.StatusCode != tt.wantCode || at != want {
				t.Errorf("doMoving() = %d, following %s; want %d from %s", resp.StatusCode, at, tt.wantCode, tt.wantAt)
			}
		})
	}
}
