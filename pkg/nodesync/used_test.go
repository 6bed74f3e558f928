package nodesync

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

func backupValue(user, id string) []byte {
	b, err := json.Marshal(token.BackupCode{User: user, ID: id, Salt: []byte("salt-salt-salt-s"),
		Hash: []byte("hash-hash-hash-hash-hash-hash-ha"), Created: time.Unix(1700000000, 0).UTC()})
	if err != nil {
		panic(err)
	}
	return b
}

// TestUsedReported: a used mark whose code is still in tokens.db is reported to the registry,
// retried after a failed report, and reported once; a mark whose code is gone is not reported.
func TestUsedReported(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t)
	set := base.clone()
	set["b/alice/c1"] = backupValue("alice", "c1")
	set["b/alice/c2"] = backupValue("alice", "c2")
	f.snapshots = []reply{{status: 200, body: snapshotBody(5, set)}}
	f.usedFail = 1
	e := newEnv(t, f)
	used := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	state := store.NewState(store.Options{Dir: e.dir, Timeout: time.Second})
	mark := func(user, id string) {
		t.Helper()
		if err := state.Update(func(x *store.StateTx) error { return x.UseBackup(user, id, used) }); err != nil {
			t.Fatal(err)
		}
	}
	mark("alice", "c1")
	mark("alice", "gone") // its record is not in tokens.db (the registry deleted it already)
	o := e.options()
	o.UsedEvery = 10 * time.Millisecond
	s := e.start(t, o)

	f.waitEvent(t, "used failed")
	f.waitEvent(t, "used n=1") // the retry
	mark("alice", "c2")
	f.waitEvent(t, "used n=1") // only the new mark: c1 went through already

	f.mu.Lock()
	got := f.used
	f.mu.Unlock()
	want := []registryapi.UsedReport{{Used: []registryapi.UsedMark{{Key: "b/alice/c1", At: used}}}, {Used: []registryapi.UsedMark{{Key: "b/alice/c2", At: used}}}}
	if len(got) != len(want) {
		t.Fatalf("used reports = %+v, want %+v", got, want)
	}
	for i := range want {
		if len(got[i].Used) != 1 || got[i].Used[0].Key != want[i].Used[0].Key || !got[i].Used[0].At.Equal(used) {
			t.Errorf("used report %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// The server answers before the syncer counts; give it a moment.
	for deadline := time.Now().Add(5 * time.Second); s.Metrics().UsedReported() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := s.Metrics().UsedReported(); n != 2 {
		t.Errorf("UsedReported() = %d, want 2", n)
	}
	var buf bytes.Buffer
	s.Metrics().WriteTo(&buf)
	if !strings.Contains(buf.String(), "pam_totp_sync_used_reported_total 2\n") {
		t.Errorf("metrics lack pam_totp_sync_used_reported_total 2:\n%s", buf.String())
	}
}
