package kv

import (
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
		return tx.Bucket(bucketHistory).Put(historyKey(2, 0), []byte{eventVersion, byte(Put), 0xff})
	})
	if evs, err := s.Events(ctx, "", 0, 0); err == nil || !strings.Contains(err.Error(), "revision 2") {
		t.Errorf("Events over a corrupt entry = %s, %v, want an error naming revision 2", describe(evs), err)
	}
	if evs, err := s.Events(ctx, "", 0, 1); err != nil || len(evs) != 1 {
		t.Errorf("Events before the corrupt entry = %s, %v, want revision 1", describe(evs), err)
	}
	s.Close()
}

func TestEventCodec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    Event
	}{
		{"put new", Event{Rev: 5, Type: Put, Key: "k", Value: []byte("v")}},
		{"put empty", Event{Rev: 5, Type: Put, Key: "k", Value: []byte{}}},
		{"put over", Event{Rev: 5, Type: Put, Key: "k", Value: []byte("v"), Prev: &KeyValue{Key: "k", Value: []byte("old"), ModRev: 4}}},
		{"delete", Event{Rev: 9, Type: Delete, Key: "t/alice/1", Prev: &KeyValue{Key: "t/alice/1", Value: []byte{}, ModRev: 1}}},
	}
	for _, tc := range tests {
		got, err := decodeEvent(tc.e.Rev, encodeEvent(&tc.e))
		if err != nil || describe([]Event{got}) != describe([]Event{tc.e}) || (got.Type == Put) != (got.Value != nil) {
			t.Errorf("decodeEvent(encodeEvent(%s)) = %s, %v", tc.name, describe([]Event{got}), err)
		}
	}
	bad := []struct {
		name string
		rev  int64
		b    []byte
	}{
		{"empty", 1, nil},
		{"version", 1, []byte{9, 1, 1, 'k', 0, 0}},
		{"type", 1, []byte{1, 3, 1, 'k', 0}},
		{"key too long", 1, []byte{1, 1, 9, 'k', 0, 0}},
		{"empty key", 1, []byte{1, 1, 0, 0, 0}},
		{"no prev flag", 1, []byte{1, 1, 1, 'k', 0}},
		{"delete without prev", 1, []byte{1, 2, 1, 'k', 0}},
		{"prev from the future", 2, []byte{1, 2, 1, 'k', 1, 2, 0}},
		{"prev rev 0", 2, []byte{1, 2, 1, 'k', 1, 0, 0}},
		{"trailing", 1, []byte{1, 1, 1, 'k', 0, 0, 7}},
		{"huge length", 1, []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"rev 0", 0, []byte{1, 1, 1, 'k', 0, 0}},
	}
	for _, tc := range bad {
		if _, err := decodeEvent(tc.rev, tc.b); err == nil {
			t.Errorf("decodeEvent(%s) succeeded", tc.name)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, e := range []Event{
		{Rev: 3, Type: Put, Key: "t/alice/1", Value: []byte(`{"secret":"x"}`)},
		{Rev: 3, Type: Put, Key: "k", Value: []byte("v"), Prev: &KeyValue{Key: "k", Value: []byte("old"), ModRev: 2}},
		{Rev: 3, Type: Delete, Key: "k", Prev: &KeyValue{Key: "k", Value: []byte("old"), ModRev: 1}},
	} {
		f.Add(e.Rev, encodeEvent(&e))
	}
	f.Add(int64(1), []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, rev int64, b []byte) {
		e, err := decodeEvent(rev, b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decodeEvent(rev, encodeEvent(&e))
		if err != nil || describe([]Event{again}) != describe([]Event{e}) {
			t.Fatalf("decodeEvent(encodeEvent(%s)) = %s, %v", describe([]Event{e}), describe([]Event{again}), err)
		}
	})
}

// Compact deletes in chunks: a revision larger than a chunk goes whole, and no entry is left.
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
	if left != 2 {
		t.Errorf("history has %d entries after Compact(3), want 2", left)
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
