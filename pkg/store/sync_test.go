package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

var testSource = Origin{Source: "https://registry.test:8443", Epoch: "0123456789abcdef"}

var syncNow = time.Unix(1700000500, 0).UTC()

func tokValue(t testing.TB, user, id string) []byte {
	t.Helper()
	b, err := json.Marshal(tok(user, id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func backupValue(t testing.TB, user, id string) []byte {
	t.Helper()
	b, err := json.Marshal(token.BackupCode{User: user, ID: id, Salt: []byte("salt"), Hash: []byte("hash-bytes"),
		Created: time.Unix(1700000000, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stage builds tokens.db at rev from records (which must be sorted by key) through a staging file.
func stage(t testing.TB, db *Tokens, rev int64, recs []Change) Meta {
	t.Helper()
	s, err := db.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	var d syncframe.Digest
	for _, r := range recs {
		if err := s.Put(r.Key, r.Value); err != nil {
			t.Fatalf("Staging.Put(%q) = %v", r.Key, err)
		}
		d.Add(r.Key, r.Value)
	}
	m, err := s.Finish(rev, d.Count(), d.String(), testSource, syncNow)
	if err != nil {
		t.Fatalf("Staging.Finish = %v", err)
	}
	return m
}

// checkDigest recomputes the digest from the file and compares it with meta and with want.
func checkDigest(t *testing.T, db *Tokens, want map[string][]byte) Meta {
	t.Helper()
	d, m, err := db.Digest()
	if err != nil {
		t.Fatalf("Digest() = %v", err)
	}
	var w syncframe.Digest
	for k, v := range want {
		w.Add(k, v)
	}
	if !d.Matches(m.Count, m.Digest) {
		t.Errorf("recomputed %d/%s, meta says %d/%s", d.Count(), d, m.Count, m.Digest)
	}
	if !d.Matches(w.Count(), w.String()) {
		t.Errorf("recomputed %d/%s, want %d/%s", d.Count(), d, w.Count(), w.String())
	}
	return m
}

func TestApply(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	db := NewTokens(o)
	base := []Change{
		{Key: "b/alice/1", Value: backupValue(t, "alice", "1")},
		{Key: "t/alice/a", Value: tokValue(t, "alice", "a")},
		{Key: "t/bob/z", Value: tokValue(t, "bob", "z")},
	}
	stage(t, db, 10, base)
	want := map[string][]byte{}
	for _, r := range base {
		want[r.Key] = r.Value
	}
	checkDigest(t, db, want)

	renamed := tok("alice", "a")
	renamed.Name = "laptop"
	renamedValue, _ := json.Marshal(renamed)
	wrongUser := tokValue(t, "mallory", "a")
	unknownField := append(bytes.TrimSuffix(tokValue(t, "carol", "c"), []byte("}")), []byte(`,"admin":true}`)...)

	tests := []struct {
		name    string
		rev     int64
		changes []Change
		applied bool
		wantErr error
		after   map[string][]byte // nil: unchanged
	}{
		{name: "put new", rev: 11, changes: []Change{{Key: "t/carol/c", Value: tokValue(t, "carol", "c")}}, applied: true,
			after: map[string][]byte{"t/carol/c": tokValue(t, "carol", "c")}},
		{name: "put replaces", rev: 12, changes: []Change{{Key: "t/alice/a", Value: renamedValue}}, applied: true,
			after: map[string][]byte{"t/alice/a": renamedValue}},
		{name: "delete", rev: 13, changes: []Change{{Key: "t/bob/z"}, {Key: "b/alice/1"}}, applied: true,
			after: map[string][]byte{"t/bob/z": nil, "b/alice/1": nil}},
		{name: "same revision again is dropped", rev: 13, changes: []Change{{Key: "t/alice/a"}}},
		{name: "older revision is dropped", rev: 5, changes: []Change{{Key: "t/alice/a"}}},
		{name: "value of another user", rev: 14, changes: []Change{{Key: "t/dave/d", Value: tokValue(t, "dave", "d")},
			{Key: "t/alice/a", Value: wrongUser}}, wantErr: ErrInvalid},
		{name: "value of another id", rev: 14, changes: []Change{{Key: "t/alice/b", Value: renamedValue}}, wantErr: ErrInvalid},
		{name: "token value under a backup key", rev: 14, changes: []Change{{Key: "b/alice/a", Value: renamedValue}}, wantErr: ErrInvalid},
		{name: "unknown field", rev: 14, changes: []Change{{Key: "t/carol/c", Value: unknownField}}, wantErr: ErrInvalid},
		{name: "data after the object", rev: 14, changes: []Change{{Key: "t/carol/c", Value: append(tokValue(t, "carol", "c"), " {}"...)}}, wantErr: ErrInvalid},
		{name: "invalid token", rev: 14, changes: []Change{{Key: "t/carol/c", Value: []byte(`{"user":"carol","id":"c","digits":5}`)}}, wantErr: ErrInvalid},
		{name: "bad key", rev: 14, changes: []Change{{Key: "x/carol/c", Value: tokValue(t, "carol", "c")}}, wantErr: ErrInvalid},
		{name: "put then delete in one batch", rev: 14, changes: []Change{{Key: "t/erin/e", Value: tokValue(t, "erin", "e")}, {Key: "t/erin/e"}},
			applied: true, after: map[string][]byte{}},
		{name: "delete of a missing record", rev: 15, changes: []Change{{Key: "t/nobody/x"}}, applied: true, after: map[string][]byte{}},
	}
	for _, tt := range tests { // in order: each case starts where the previous one left off
		t.Run(tt.name, func(t *testing.T) {
			before, _ := db.Meta()
			m, applied, err := db.Apply(tt.rev, tt.changes, testSource, syncNow.Add(time.Minute))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Apply(%d) = %v, want %v", tt.rev, err, tt.wantErr)
			}
			if applied != tt.applied {
				t.Errorf("Apply(%d) applied = %v, want %v", tt.rev, applied, tt.applied)
			}
			for k, v := range tt.after {
				if v == nil {
					delete(want, k)
				} else {
					want[k] = v
				}
			}
			got := checkDigest(t, db, want)
			if tt.applied {
				if got.Revision != uint64(tt.rev) || m.Revision != got.Revision || !got.LastContact.Equal(syncNow.Add(time.Minute)) {
					t.Errorf("meta after Apply(%d) = %+v", tt.rev, got)
				}
			} else if fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("meta changed by a dropped or refused batch: %+v, was %+v", got, before)
			}
		})
	}
	// The helper reads the records unchanged.
	d, err := db.ReadUser("alice")
	if err != nil || len(d.Tokens) != 1 || d.Tokens[0].Name != "laptop" || len(d.Backup) != 0 {
		t.Errorf("ReadUser(alice) = %+v, %v", d, err)
	}
}

func TestApplyNeedsSnapshot(t *testing.T) {
	t.Parallel()
	change := []Change{{Key: "t/alice/a", Value: tokValue(t, "alice", "a")}}
	tests := []struct {
		name    string
		setup   func(*Tokens)
		source  Origin
		wantErr error
	}{
		{name: "no tokens.db", setup: func(*Tokens) {}, source: testSource, wantErr: ErrNoStore},
		{name: "standalone tokens.db", setup: func(db *Tokens) {
			db.Update(func(x *TokensTx) error { return x.PutToken(tok("bob", "b")) })
		}, source: testSource, wantErr: ErrStoreCheck},
		{name: "another store", setup: func(db *Tokens) { stage(t, db, 3, nil) }, source: Origin{Source: testSource.Source, Epoch: "fedcba9876543210"}, wantErr: ErrStoreCheck},
		{name: "another replica of the store", setup: func(db *Tokens) { stage(t, db, 3, nil) }, source: Origin{Source: "https://other:1", Epoch: testSource.Epoch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := NewTokens(tempStore(t))
			tt.setup(db)
			if _, _, err := db.Apply(7, change, tt.source, syncNow); !errors.Is(err, tt.wantErr) {
				t.Errorf("Apply() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTouch(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	stage(t, db, 4, []Change{{Key: "t/alice/a", Value: tokValue(t, "alice", "a")}})
	later := syncNow.Add(time.Hour)
	tests := []struct {
		name    string
		rev     int64
		at      time.Time
		wantRev uint64
		wantAt  time.Time
	}{
		{name: "advances", rev: 9, at: later, wantRev: 9, wantAt: later},
		{name: "never backwards", rev: 2, at: syncNow, wantRev: 9, wantAt: later},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := db.Touch(tt.rev, "", tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := db.Meta(); got.Revision != tt.wantRev || !got.LastContact.Equal(tt.wantAt) || got != m {
				t.Errorf("Touch(%d) meta = %+v, want revision %d, last contact %v", tt.rev, got, tt.wantRev, tt.wantAt)
			}
		})
	}
}

func TestStagingRefuses(t *testing.T) {
	t.Parallel()
	good := tokValue(t, "alice", "a")
	tests := []struct {
		name   string
		recs   []Change
		count  int64
		digest string
	}{
		{name: "keys out of order", recs: []Change{{Key: "t/bob/b", Value: tokValue(t, "bob", "b")}, {Key: "t/alice/a", Value: good}}},
		{name: "duplicate key", recs: []Change{{Key: "t/alice/a", Value: good}, {Key: "t/alice/a", Value: good}}},
		{name: "value of another user", recs: []Change{{Key: "t/bob/a", Value: good}}},
		{name: "count disagrees", recs: []Change{{Key: "t/alice/a", Value: good}}, count: 2},
		{name: "digest disagrees", recs: []Change{{Key: "t/alice/a", Value: good}}, count: 1, digest: "00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := NewTokens(tempStore(t))
			old := stage(t, db, 2, []Change{{Key: "t/zed/z", Value: tokValue(t, "zed", "z")}})
			s, err := db.NewStaging()
			if err != nil {
				t.Fatal(err)
			}
			var d syncframe.Digest
			for _, r := range tt.recs {
				if err = s.Put(r.Key, r.Value); err != nil {
					break
				}
				d.Add(r.Key, r.Value)
			}
			if err == nil {
				count, digest := d.Count(), d.String()
				if tt.count != 0 {
					count = tt.count
				}
				if tt.digest != "" {
					digest = tt.digest
				}
				_, err = s.Finish(5, count, digest, testSource, syncNow)
			}
			s.Abort()
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("staging %s = %v, want ErrInvalid", tt.name, err)
			}
			if m, _ := db.Meta(); m != old {
				t.Errorf("tokens.db changed: %+v, was %+v", m, old)
			}
			if left, _ := filepath.Glob(filepath.Join(db.opts.Dir, stagingPattern)); len(left) != 0 {
				t.Errorf("staging files left: %v", left)
			}
		})
	}
}

// records returns n sorted token records for users u00000…
func records(t testing.TB, n int, tag string) []Change {
	out := make([]Change, n)
	for i := range out {
		user := fmt.Sprintf("u%06d", i)
		tk := tok(user, tag)
		out[i] = Change{Key: syncframe.TokenKey(user, tag), Value: encode(tk)}
	}
	return out
}

// countSet reads tokens.db the way a login does, and counts its records against meta.
func countSet(db *Tokens) (n int64, m Meta, err error) {
	err = db.View(func(x *TokensTx) error {
		var err error
		if m, err = x.Meta(); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketTokens, bucketBackup} {
			n += int64(x.tx.Bucket(b).Stats().KeyN)
		}
		return nil
	})
	return n, m, err
}

func TestStagingSwitchIsAtomic(t *testing.T) {
	t.Parallel()
	n := 100000
	if testing.Short() {
		n = 10000
	}
	db := NewTokens(tempStore(t))
	stage(t, db, 1, records(t, 1000, "old"))
	newSet := records(t, n, "new")

	var stop atomic.Bool
	var wg sync.WaitGroup
	seen := map[int64]int{}
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			got, m, err := countSet(db)
			if err != nil {
				readErr = err
				return
			}
			if got != m.Count || (got != 1000 && got != int64(n)) {
				readErr = fmt.Errorf("a reader saw %d records, meta says %d (revision %d)", got, m.Count, m.Revision)
				return
			}
			seen[got]++
		}
	}()
	stage(t, db, 2, newSet)
	// Let the reader see the new file at least once.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); runtime.Gosched() {
		if m, _ := db.Meta(); m.Revision == 2 {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if seen[1000] == 0 && seen[int64(n)] == 0 {
		t.Errorf("reader saw nothing: %v", seen)
	}
	t.Logf("reads by record count: %v", seen)
	got, m, err := countSet(db)
	if err != nil || got != int64(n) || m.Revision != 2 {
		t.Errorf("after the switch: %d records, meta %+v, %v", got, m, err)
	}
}

func TestStagingKilledLeavesTokensUntouched(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	old := stage(t, db, 3, records(t, 10, "old"))

	killed, err := db.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records(t, stagingChunk+10, "new") {
		if err := killed.Put(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	killed.db.Close() // the process dies: no Finish, no Abort, the file stays
	if m, _ := db.Meta(); m != old {
		t.Fatalf("tokens.db changed by an unfinished build: %+v", m)
	}
	if n, err := db.RemoveStaging(); n != 1 || err != nil {
		t.Fatalf("RemoveStaging() = %d, %v, want 1 leftover removed", n, err)
	}
	// A fresh build works and switches.
	m := stage(t, db, 4, records(t, 5, "again"))
	if got, _, _ := countSet(db); got != 5 || m.Revision != 4 {
		t.Errorf("after a fresh build: %d records, meta %+v", got, m)
	}
	if _, err := os.Stat(killed.Path()); !os.IsNotExist(err) {
		t.Errorf("killed staging file still there: %v", err)
	}
}

func TestLockWriter(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	release, err := db.LockWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.LockWriter(); !errors.Is(err, ErrWriterBusy) {
		t.Errorf("second LockWriter() = %v, want ErrWriterBusy", err)
	}
	release()
	release2, err := db.LockWriter()
	if err != nil {
		t.Errorf("LockWriter() after release = %v", err)
	} else {
		release2()
	}
}

func FuzzApplyValue(f *testing.F) {
	f.Add("t/alice/a", string(tokValue(f, "alice", "a")))
	f.Add("b/alice/1", string(backupValue(f, "alice", "1")))
	f.Add("t/alice/a", `{"user":"alice","id":"a","secret":"AAAAAAAAAAAAAA==","digits":6,"period":30,"algorithm":"SHA1","state":"active"}`)
	f.Add("t/alice/a", `{"user":"alice","id":"a"} {}`)
	f.Add("b/bob/x", `{"user":"bob","id":"x","salt":"","hash":"aGFzaA=="}`)
	f.Add("u/bob/enrolled", `{"user":"bob","since":"2026-12-05T00:00:00Z"}`)
	f.Add("u/bob/other", `{"user":"bob"}`)
	f.Fuzz(func(t *testing.T, key, value string) {
		bucket, k, err := CheckRecord(key, []byte(value))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckRecord(%q, %q) = %v, not ErrInvalid", key, value, err)
			}
			return
		}
		// Accepted: the login path must read it back as a valid record of the key's user and id.
		kind, user, id, err := syncframe.ParseKey(key)
		if err != nil {
			t.Fatalf("accepted a key ParseKey refuses: %q", key)
		}
		back, err := recordKey(kind, k)
		if err != nil || back != key || !bytes.Equal(recordBuckets[kind], bucket) {
			t.Fatalf("store key %q maps back to %q, %v; want %q", k, back, err, key)
		}
		if kind == syncframe.KindToken {
			var tk token.Token
			if err := json.Unmarshal([]byte(value), &tk); err != nil || tk.Validate() != nil || tk.User != user || tk.ID != id {
				t.Fatalf("accepted token %q reads back as %+v, %v", value, tk, err)
			}
		} else if kind == syncframe.KindUser {
			var e token.Enrolled
			if err := json.Unmarshal([]byte(value), &e); err != nil || e.Validate() != nil || e.User != user || id != syncframe.EnrolledID {
				t.Fatalf("accepted mark %q reads back as %+v, %v", value, e, err)
			}
		} else {
			var c token.BackupCode
			if err := json.Unmarshal([]byte(value), &c); err != nil || c.Validate() != nil || c.User != user || c.ID != id {
				t.Fatalf("accepted backup code %q reads back as %+v, %v", value, c, err)
			}
		}
	})
}

// snapshotStream encodes recs as a snapshot at rev.
func snapshotStream(tb testing.TB, rev int64, recs []Change) []byte {
	var buf bytes.Buffer
	w := syncframe.NewWriter(&buf)
	var d syncframe.Digest
	w.Write(syncframe.Frame{Type: syncframe.Begin, Rev: rev, Count: int64(len(recs))})
	for _, r := range recs {
		d.Add(r.Key, r.Value)
		if err := w.Write(syncframe.Frame{Type: syncframe.Put, Rev: rev, Key: r.Key, Value: r.Value}); err != nil {
			tb.Fatal(err)
		}
	}
	w.Write(syncframe.Frame{Type: syncframe.End, Rev: rev, Count: d.Count(), Digest: d.String()})
	return buf.Bytes()
}

// peakHeap samples the heap in use until stop is called, and returns the highest value seen.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkStagingSync100k: a full resync of 100,000 tokens, from snapshot bytes to the switch.
func BenchmarkStagingSync100k(b *testing.B) {
	stream := snapshotStream(b, 42, records(b, 100000, "phone"))
	b.SetBytes(int64(len(stream)))
	dir := b.TempDir()
	os.Chmod(dir, 0o700)
	db := NewTokens(Options{Dir: dir, Timeout: time.Second})
	runtime.GC()
	stop := peakHeap()
	b.ResetTimer()
	for b.Loop() {
		s, err := db.NewStaging()
		if err != nil {
			b.Fatal(err)
		}
		rev, d, err := syncframe.Snapshot(syncframe.NewReader(bytes.NewReader(stream)), func(f syncframe.Frame) error {
			return s.Put(f.Key, f.Value)
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Finish(rev, d.Count(), d.String(), testSource, syncNow); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
}

// BenchmarkApply1000Batches: 1,000 single-record batches, each its own transaction with meta.
func BenchmarkApply1000Batches(b *testing.B) {
	dir := b.TempDir()
	os.Chmod(dir, 0o700)
	db := NewTokens(Options{Dir: dir, Timeout: time.Second})
	stage(b, db, 1, records(b, 10000, "phone"))
	rev := int64(1)
	b.ResetTimer()
	for b.Loop() {
		for i := range 1000 {
			rev++
			user := fmt.Sprintf("u%06d", i*7)
			c := []Change{{Key: syncframe.TokenKey(user, "phone"), Value: encode(tok(user, "phone"))}}
			if i%2 == 1 {
				c[0].Value = nil
			}
			if _, _, err := db.Apply(rev, c, testSource, syncNow); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "us/batch")
}
