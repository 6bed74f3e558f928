package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

func tempPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "registry.db")
}

func TestBoltContract(t *testing.T) {
	t.Parallel()
	runContract(t, contract{
		open:        func(t testing.TB) Store { return openTemp(t, BoltOptions{}) },
		consecutive: true,
	})
}

func openTemp(t testing.TB, opts BoltOptions) *Bolt {
	t.Helper()
	b, err := OpenBolt(tempPath(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// put commits key=value pairs (value "" deletes) as one Update and returns its revision.
// describe renders events as "rev type key=value (prev@modrev)" for comparisons.
func describe(evs []Event) string {
	var s []string
	for _, e := range evs {
		d := fmt.Sprintf("%d %s %s", e.Rev, e.Type, e.Key)
		if e.Type == Put {
			d += "=" + string(e.Value)
		}
		if e.Prev != nil {
			d += fmt.Sprintf(" (%s@%d)", e.Prev.Value, e.Prev.ModRev)
		}
		s = append(s, d)
	}
	return strings.Join(s, "; ")
}

func TestHistoryLimit(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	s, err := OpenBolt(path, BoltOptions{HistoryLimit: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		put(t, s, "k", fmt.Sprint(i), fmt.Sprintf("k%d", i), "x")
	}
	if s.Rev() != 10 || s.CompactedRev() != 7 {
		t.Errorf("HistoryLimit 3 after 10 revisions: Rev %d, CompactedRev %d, want 10, 7", s.Rev(), s.CompactedRev())
	}
	if _, err := s.Events(ctx, "", 6, 0); !errors.Is(err, ErrCompacted) {
		t.Errorf("Events(6) = %v, want ErrCompacted", err)
	}
	evs, err := s.Events(ctx, "k", 7, 0)
	if len(evs) != 6 || evs[0].Rev != 8 || err != nil {
		t.Errorf("Events(7) = %s, %v, want revisions 8 to 10", describe(evs), err)
	}
	s.Close()

	tests := []struct {
		limit         int64
		wantCompacted int64
	}{
		{0, 7}, // unlimited keeps what is there
		{5, 7}, // a larger limit cannot bring history back
		{2, 8}, // a smaller one trims at open
	}
	for _, tc := range tests {
		s, err := OpenBolt(path, BoltOptions{HistoryLimit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if s.Rev() != 10 || s.CompactedRev() != tc.wantCompacted {
			t.Errorf("OpenBolt(limit %d): Rev %d, CompactedRev %d, want 10, %d", tc.limit, s.Rev(), s.CompactedRev(), tc.wantCompacted)
		}
		s.Close()
	}
	if _, err := OpenBolt(path, BoltOptions{HistoryLimit: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("OpenBolt(limit -1) = %v, want ErrInvalid", err)
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "a", "1")
	put(t, s, "a", "2", "b", "1")
	put(t, s, "b", "")
	s.Compact(ctx, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Rev() != 3 || s.CompactedRev() != 1 {
		t.Errorf("reopened: Rev %d, CompactedRev %d, want 3, 1", s.Rev(), s.CompactedRev())
	}
	evs, err := s.Events(ctx, "", 1, 0)
	if got, want := describe(evs), "2 put a=2 (1@1); 2 put b=1; 3 delete b (1@2)"; got != want || err != nil {
		t.Errorf("reopened Events(1) = %s, %v, want %s", got, err, want)
	}
	if rev := put(t, s, "c", "1"); rev != 4 {
		t.Errorf("first Update after reopen = %d, want 4", rev)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("store mode = %v, want 0600", info.Mode().Perm())
	}
}

func TestOpenRefusesUnsafe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, path string)
	}{
		{"symlinked file", func(t *testing.T, dir, path string) {
			real := filepath.Join(dir, "real.db")
			mustOpenClose(t, real)
			os.Symlink(real, path)
		}},
		{"group-readable file", func(t *testing.T, dir, path string) {
			mustOpenClose(t, path)
			os.Chmod(path, 0o640)
		}},
		{"file of another user", func(t *testing.T, dir, path string) {
			mustOpenClose(t, path)
			os.Chown(path, 65534, 65534)
		}},
		{"world-readable directory", func(t *testing.T, dir, path string) { os.Chmod(dir, 0o755) }},
		{"symlinked directory", func(t *testing.T, dir, path string) {
			os.Rename(dir, dir+".real")
			os.Symlink(dir+".real", dir)
		}},
		{"not a kv store", func(t *testing.T, dir, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("tokens")); return err })
			db.Close()
		}},
		{"garbage", func(t *testing.T, dir, path string) { os.WriteFile(path, []byte(strings.Repeat("x", 8192)), 0o600) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tempPath(t)
			tc.setup(t, filepath.Dir(path), path)
			s, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatalf("OpenBolt(%s) succeeded", tc.name)
			}
			if strings.Contains(tc.name, "symlink") || strings.Contains(tc.name, "readable") || strings.Contains(tc.name, "another") {
				if !errors.Is(err, securefile.ErrUnsafe) {
					t.Errorf("OpenBolt(%s) = %v, want securefile.ErrUnsafe", tc.name, err)
				}
			}
		})
	}
}

func mustOpenClose(t *testing.T, path string) {
	t.Helper()
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestSecondOpenTimesOut(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if s2, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond}); err == nil {
		s2.Close()
		t.Fatal("second OpenBolt of an open store succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second OpenBolt took %v, want about the 100 ms timeout", d)
	}
}

func TestCorruptHistory(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "a", "1")
	put(t, s, "a", "2")
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).Put(historyKey(2, 0), []byte{entryVersion, byte(Put), 0xff})
	})
	if evs, err := s.Events(ctx, "", 0, 0); err == nil || !strings.Contains(err.Error(), "revision 2") {
		t.Errorf("Events over a corrupt entry = %s, %v, want an error naming revision 2", describe(evs), err)
	}
	if evs, err := s.Events(ctx, "", 0, 1); err != nil || len(evs) != 1 {
		t.Errorf("Events before the corrupt entry = %s, %v, want revision 1", describe(evs), err)
	}
	s.Close()
}

// badValue is a malformed history value of revision rev.
type badValue struct {
	name string
	rev  int64
	b    []byte
}

// badHeads are history values of the given version that the shared head, or the previous-value
// flag after it, makes malformed.
func badHeads(v byte) []badValue {
	return []badValue{
		{"empty", 1, nil},
		{"type", 1, []byte{v, 3, 1, 'k', 0}},
		{"key too long", 1, []byte{v, 1, 9, 'k', 0, 0}},
		{"empty key", 1, []byte{v, 1, 0, 0, 0}},
		{"no prev flag", 1, []byte{v, 1, 1, 'k', 0}},
		{"delete without prev", 1, []byte{v, 2, 1, 'k', 0}},
		{"huge length", 1, []byte{v, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"rev 0", 0, []byte{v, 1, 1, 'k', 0, 0}},
	}
}

func TestEntryCodec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		typ   EventType
		value []byte
		prev  []byte
	}{
		{"put new", Put, []byte("v"), nil},
		{"put empty", Put, []byte{}, nil},
		{"put over", Put, []byte("v"), historyKey(4, 2)},
		{"delete", Delete, nil, historyKey(1, 0)},
	}
	for _, tc := range tests {
		e, err := parseEntry(5, encodeEntry(tc.typ, []byte("t/alice/1"), tc.value, tc.prev))
		if err != nil || e.typ != tc.typ || string(e.key) != "t/alice/1" || !bytes.Equal(e.value, tc.value) ||
			(e.value == nil) != (tc.typ == Delete) || !bytes.Equal(e.prev, tc.prev) || (e.prev == nil) != (tc.prev == nil) {
			t.Errorf("parseEntry(encodeEntry(%s)) = %+v, %v", tc.name, e, err)
		}
	}
	ref := historyKey(1, 0)
	bad := append(badHeads(entryVersion), []badValue{
		{"version 1", 1, []byte{1, 1, 1, 'k', 0, 0}},
		{"prev from the future", 2, append([]byte{2, 2, 1, 'k', 1}, historyKey(2, 0)...)},
		{"prev rev 0", 2, append([]byte{2, 2, 1, 'k', 1}, make([]byte, 12)...)},
		{"short prev", 2, append([]byte{2, 2, 1, 'k', 1}, ref[:11]...)},
		{"trailing", 2, append([]byte{2, 2, 1, 'k', 1}, append(ref, 7)...)},
		{"prev flag 2", 2, append([]byte{2, 2, 1, 'k', 2}, ref...)},
	}...)
	for _, tc := range bad {
		if _, err := parseEntry(tc.rev, tc.b); err == nil {
			t.Errorf("parseEntry(%s) succeeded", tc.name)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add(int64(3), encodeEntry(Put, []byte("t/alice/1"), []byte(`{"secret":"x"}`), nil))
	f.Add(int64(3), encodeEntry(Put, []byte("k"), []byte("v"), historyKey(2, 1)))
	f.Add(int64(3), encodeEntry(Delete, []byte("k"), nil, historyKey(1, 0)))
	f.Add(int64(1), []byte{2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, rev int64, b []byte) {
		e, err := parseEntry(rev, b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		if again := encodeEntry(e.typ, e.key, e.value, e.prev); !bytes.Equal(again, b) {
			t.Fatalf("encodeEntry(parseEntry(%x)) = %x", b, again)
		}
	})
}

// The format 1 decoder reads only what the converter needs; it refuses what is malformed.
func TestParseEventV1(t *testing.T) {
	t.Parallel()
	good := []struct {
		name string
		b    []byte
		want string
	}{
		{"put new", []byte{1, 1, 1, 'k', 1, 'v', 0}, "put k=v"},
		{"put over", []byte{1, 1, 1, 'k', 1, 'v', 1, 4, 3, 'o', 'l', 'd'}, "put k=v (old@4)"},
		{"delete", []byte{1, 2, 1, 'k', 1, 1, 0}, "delete k (@1)"},
	}
	for _, tc := range good {
		e, err := parseEventV1(5, tc.b)
		got := fmt.Sprintf("%s %s", e.typ, e.key)
		if e.typ == Put {
			got += "=" + string(e.value)
		}
		if e.hasPrev {
			got += fmt.Sprintf(" (%s@%d)", e.prevValue, e.prevRev)
		}
		if err != nil || got != tc.want {
			t.Errorf("parseEventV1(%s) = %s, %v, want %s", tc.name, got, err, tc.want)
		}
	}
	bad := append(badHeads(format1EventVersion), []badValue{
		{"version 9", 1, []byte{9, 1, 1, 'k', 0, 0}},
		{"prev from the future", 2, []byte{1, 2, 1, 'k', 1, 2, 0}},
		{"prev rev 0", 2, []byte{1, 2, 1, 'k', 1, 0, 0}},
		{"trailing", 1, []byte{1, 1, 1, 'k', 0, 0, 7}},
	}...)
	for _, tc := range bad {
		if _, err := parseEventV1(tc.rev, tc.b); err == nil {
			t.Errorf("parseEventV1(%s) succeeded", tc.name)
		}
	}
}

func FuzzParseEventV1(f *testing.F) {
	f.Add(int64(5), []byte{1, 1, 1, 'k', 1, 'v', 1, 4, 3, 'o', 'l', 'd'})
	f.Add(int64(5), []byte{1, 2, 1, 'k', 1, 1, 0})
	f.Fuzz(func(t *testing.T, rev int64, b []byte) {
		e, err := parseEventV1(rev, b)
		if err == nil && (len(e.key) == 0 || (e.typ == Delete && !e.hasPrev) || (e.hasPrev && (e.prevRev <= 0 || e.prevRev >= rev))) {
			t.Fatalf("parseEventV1(%d, %x) = %+v, want an error", rev, b, e)
		}
	})
}

// Compact works in chunks: a revision larger than a chunk goes whole, and of the history up to the
// compacted revision only the current values and the previous values of later events are left.
func TestBoltCompactChunks(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	big := make([]string, 0, 2*(compactChunk+500))
	for i := range compactChunk + 500 {
		big = append(big, fmt.Sprintf("big/%06d", i), "v")
	}
	put(t, s, big...)
	for i := range 4 {
		put(t, s, "k", fmt.Sprint(i)) // revisions 2 to 5
	}
	if err := s.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events(ctx, "", 3, 0); err != nil || describe(evs) != "4 put k=2 (1@3); 5 put k=3 (2@4)" {
		t.Errorf("Events(3) after Compact(3) = %s, %v", describe(evs), err)
	}
	var left int
	s.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(bucketHistory).Stats().KeyN; return nil })
	if want := compactChunk + 500 + 3; left != want { // big/ at 1; k at 3 (previous of 4), 4 and 5
		t.Errorf("history has %d entries after Compact(3), want %d", left, want)
	}
	s.View(ctx, func(rev int64, tx Txn) error {
		n := 0
		tx.Range("big/", func(KeyValue) error { n++; return nil })
		if n != compactChunk+500 || rev != 5 {
			t.Errorf("after Compact: %d big/ keys at rev %d, want %d at 5", n, rev, compactChunk+500)
		}
		return nil
	})
}

// Bolt serialises writers: waiting for the writer slot gives up at the deadline.
func TestBoltWriterSlot(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	hold, release := make(chan struct{}), make(chan struct{})
	go s.Update(ctx, func(tx Txn) error { close(hold); <-release; return nil })
	<-hold
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.Update(short, func(Txn) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update behind a busy writer = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if s.Rev() != 0 {
		t.Errorf("Rev() = %d, want 0", s.Rev())
	}
}

// dumpBolt renders a store's revisions, its history after since and every key, as in
// testdata/format1.golden.
func dumpBolt(t testing.TB, s Store, since int64) string {
	t.Helper()
	evs, err := s.Events(ctx, "", since, 0)
	if err != nil {
		t.Fatalf("Events(%d) = %v", since, err)
	}
	var keys []string
	err = s.View(ctx, func(_ int64, tx Txn) error {
		return tx.Range("", func(kv KeyValue) error {
			keys = append(keys, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRev))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("View = %v", err)
	}
	return fmt.Sprintf("rev %d compacted %d\nevents after %d: %s\nkeys: %s\n", s.Rev(), s.CompactedRev(), since,
		describe(evs), strings.Join(keys, "; "))
}

// historyEntries counts the history entries at or below rev.
func historyEntries(t *testing.T, s *Bolt, rev int64) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if r, err := parseHistoryKey(k); err != nil || r > rev {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// format1Copy copies testdata/format1.db to a store path of the test's own.
func format1Copy(t *testing.T) string {
	t.Helper()
	old, err := os.ReadFile(filepath.Join("testdata", "format1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := tempPath(t)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testdata/format1.db was written by the format 1 code (values in bucket kv and, with the
// previous values, in the history), compacted up to revision 3; testdata/format1.golden is what
// that code read from it. OpenBolt converts it, and reads the same.
func TestBoltFormat1(t *testing.T) {
	t.Parallel()
	golden, err := os.ReadFile(filepath.Join("testdata", "format1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	path := format1Copy(t)
	for i := range 2 { // converted, then opened as format 2
		s, err := OpenBolt(path, BoltOptions{})
		if err != nil {
			t.Fatalf("OpenBolt(format 1 file), open %d: %v", i+1, err)
		}
		if got := dumpBolt(t, s, 3); got != string(golden) {
			t.Errorf("open %d of a format 1 file reads\n%s\nwant (as format 1 read it)\n%s", i+1, got, golden)
		}
		var format int64
		s.db.View(func(tx *bolt.Tx) error { format, _ = metaInt(tx.Bucket(bucketMeta), keyFormat); return nil })
		// At or below the compacted revision 3, only values still needed: a@2, c@1, d@2 and g@2
		// (previous values of events after 3) and f@1 (current).
		if n := historyEntries(t, s, 3); format != formatVersion || n != 5 {
			t.Errorf("open %d: format %d, %d history entries up to revision 3, want %d, 5", i+1, format, n, formatVersion)
		}
		s.Close()
	}
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "a", "5", "f", "")
	if evs, err := s.Events(ctx, "", 9, 0); describe(evs) != "10 put a=5 (4@7); 10 delete f (1@1)" || err != nil {
		t.Errorf("Events(9) after an Update on a converted store = %s, %v", describe(evs), err)
	}
}

// A format 1 file whose history contradicts its values is refused with the reason, and left as
// it was.
func TestBoltFormat1Corrupt(t *testing.T) {
	t.Parallel()
	path := format1Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// e's current value claims revision 8; its history entry is at 7.
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKV).Put([]byte("e"), append(be64(8), '1')) })
	db.Close()
	if s, err := OpenBolt(path, BoltOptions{}); err == nil || !strings.Contains(err.Error(), "convert from format 1") ||
		!strings.Contains(err.Error(), `"e"`) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenBolt(corrupt format 1 file) = %v, want a conversion error naming the key", err)
	}
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var format int64
	db.View(func(tx *bolt.Tx) error { format, _ = metaInt(tx.Bucket(bucketMeta), keyFormat); return nil })
	if format != 1 {
		t.Errorf("format after a failed conversion = %d, want 1", format)
	}
}

// Each value is stored once: n values of 1 KiB take about n KiB of pages, not twice that; and
// the references of keys written in key order fill their pages.
func TestBoltValueOnce(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	const n = 1000
	value := bytes.Repeat([]byte("v"), 1024)
	if _, err := s.Update(ctx, func(tx Txn) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("t/user%04d/1", i), value); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var used int
	var kvStats bolt.BucketStats
	s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketHistory} {
			st := tx.Bucket(name).Stats()
			used += st.LeafInuse + st.BranchInuse
		}
		kvStats = tx.Bucket(bucketKV).Stats()
		return nil
	})
	if limit := n * len(value) * 5 / 4; used > limit {
		t.Errorf("%d values of %d bytes use %d bytes of pages, want at most %d", n, len(value), used, limit)
	}
	// Keys written in key order fill their pages.
	if kvStats.LeafInuse*10 < kvStats.LeafAlloc*8 {
		t.Errorf("bucket kv uses %d of %d bytes of its leaf pages, want at least 80%%", kvStats.LeafInuse, kvStats.LeafAlloc)
	}
}

// Compaction keeps exactly what is still needed: the latest Put at or below the compacted
// revision of every key whose latest entry there is a Put. The store reads as one never
// compacted does: its keys, and the events (with previous values) after the compacted revision.
func TestBoltCompactKeeps(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{0, 3} {
		t.Run(fmt.Sprintf("HistoryLimit %d", limit), func(t *testing.T) {
			t.Parallel()
			s, full := openTemp(t, BoltOptions{HistoryLimit: limit}), openTemp(t, BoltOptions{})
			keys := []string{"a", "b", "c", "d"}
			exists := map[string]bool{}
			for i := range 60 {
				// A deterministic mix: keys are put, overwritten, deleted and put again, some together.
				var kvs []string
				for j, k := range keys {
					switch (i*7 + j*3) % 5 {
					case 0, 1:
						kvs, exists[k] = append(kvs, k, fmt.Sprint(i)), true
					case 2:
						if exists[k] {
							kvs, exists[k] = append(kvs, k, ""), false
						}
					}
				}
				if len(kvs) == 0 {
					continue
				}
				put(t, s, kvs...)
				put(t, full, kvs...)
				if limit == 0 && i%4 == 3 {
					if err := s.Compact(ctx, s.Rev()-2); err != nil {
						t.Fatal(err)
					}
				}
				c := s.CompactedRev()
				if got, want := dumpBolt(t, s, c), dumpBolt(t, full, c); got != strings.Replace(want, "compacted 0", fmt.Sprintf("compacted %d", c), 1) {
					t.Fatalf("step %d: compacted store reads\n%s\nwant\n%s", i, got, want)
				}
				evs, err := full.Events(ctx, "", 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				latest := map[string]EventType{}
				for _, e := range evs {
					if e.Rev <= c {
						latest[e.Key] = e.Type
					}
				}
				want := 0
				for _, typ := range latest {
					if typ == Put {
						want++
					}
				}
				if got := historyEntries(t, s, c); got != want {
					t.Fatalf("step %d: %d history entries at or below the compacted revision %d, want %d", i, got, c, want)
				}
			}
			if s.CompactedRev() < 10 {
				t.Errorf("CompactedRev() = %d after the test, want it to have compacted", s.CompactedRev())
			}
		})
	}
}

// A key whose reference is damaged, or names no Put of that key, reads as an error, not a value.
func TestBoltCorruptReference(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	put(t, s, "a", "1", "b", "1")
	put(t, s, "b", "")
	for _, ref := range [][]byte{
		{pendingTag, 'x'},     // a pending value left behind
		historyKey(1, 7),      // no such entry
		historyKey(1, 1),      // b's entry
		historyKey(2, 0),      // b's tombstone
		historyKey(9, 0)[:11], // short
	} {
		s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKV).Put([]byte("a"), ref) })
		err := s.View(ctx, func(_ int64, tx Txn) error {
			kv, err := tx.Get("a")
			if err == nil {
				return fmt.Errorf("Get(a) = %q", kv.Value)
			}
			return nil
		})
		if err != nil {
			t.Errorf("reference %x: %v, want an error", ref, err)
		}
	}
}
