package kv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

var ctx = context.Background()

func tempPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "registry.db")
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
func put(t testing.TB, s Store, kvs ...string) int64 {
	t.Helper()
	rev, err := s.Update(ctx, func(tx Txn) error {
		for i := 0; i < len(kvs); i += 2 {
			if kvs[i+1] == "" {
				if err := tx.Delete(kvs[i]); err != nil {
					return err
				}
				continue
			}
			if err := tx.Put(kvs[i], []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(%q) = %v", kvs, err)
	}
	return rev
}

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

func TestRevisions(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	if s.Rev() != 0 || s.CompactedRev() != 0 {
		t.Fatalf("new store: Rev() = %d, CompactedRev() = %d, want 0, 0", s.Rev(), s.CompactedRev())
	}
	for want := int64(1); want <= 5; want++ {
		if got := put(t, s, fmt.Sprintf("k%d", want), "v"); got != want || s.Rev() != want {
			t.Fatalf("Update #%d = %d (Rev() %d), want %d", want, got, s.Rev(), want)
		}
	}
	noops := []struct {
		name string
		fn   func(Txn) error
	}{
		{"nothing", func(Txn) error { return nil }},
		{"reads only", func(tx Txn) error { _, err := tx.Get("k1"); return err }},
		{"put then delete a new key", func(tx Txn) error {
			if err := tx.Put("new", []byte("x")); err != nil {
				return err
			}
			return tx.Delete("new")
		}},
	}
	for _, tc := range noops {
		rev, err := s.Update(ctx, func(tx Txn) error { return tc.fn(tx) })
		if err != nil || rev != 5 || s.Rev() != 5 {
			t.Errorf("Update(%s) = %d, %v (Rev() %d), want 5, nil", tc.name, rev, err, s.Rev())
		}
	}
	boom := errors.New("boom")
	rev, err := s.Update(ctx, func(tx Txn) error {
		tx.Put("k1", []byte("changed"))
		return boom
	})
	if rev != 0 || err != boom {
		t.Errorf("Update(failing fn) = %d, %v, want 0, boom", rev, err)
	}
	s.View(ctx, func(rev int64, tx Txn) error {
		if kv, _ := tx.Get("k1"); string(kv.Value) != "v" || kv.ModRev != 1 || rev != 5 {
			t.Errorf("after failed Update: k1 = %+v at rev %d, want v@1 at 5", kv, rev)
		}
		return nil
	})
	evs, err := s.Events(ctx, "", 0, 0)
	if got := describe(evs); err != nil || got != "1 put k1=v; 2 put k2=v; 3 put k3=v; 4 put k4=v; 5 put k5=v" {
		t.Errorf("Events(0) = %s, %v; no-ops and failures must leave no history", got, err)
	}
}

func TestTxnOwnWrites(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	put(t, s, "a/1", "one", "a/2", "two", "b/1", "bee")
	_, err := s.Update(ctx, func(tx Txn) error {
		if err := tx.Put("a/3", []byte("three")); err != nil {
			return err
		}
		if err := tx.Delete("a/1"); err != nil {
			return err
		}
		if kv, err := tx.Get("a/3"); err != nil || string(kv.Value) != "three" || kv.ModRev != 2 {
			t.Errorf("Get(a/3) = %+v, %v, want three@2 (the revision being made)", kv, err)
		}
		if _, err := tx.Get("a/1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(deleted a/1) = %v, want ErrNotFound", err)
		}
		if err := tx.Delete("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(nope) = %v, want ErrNotFound", err)
		}
		var keys []string
		tx.Range("a/", func(kv KeyValue) error { keys = append(keys, kv.Key); return nil })
		if got := strings.Join(keys, " "); got != "a/2 a/3" {
			t.Errorf("Range(a/) = %s, want a/2 a/3", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		fn   func(Txn) error
		want error
	}{
		{"empty key", func(tx Txn) error { return tx.Put("", []byte("x")) }, ErrInvalid},
		{"long key", func(tx Txn) error { return tx.Put(strings.Repeat("k", MaxKeyLen+1), nil) }, ErrInvalid},
		{"long value", func(tx Txn) error { return tx.Put("k", make([]byte, MaxValueLen+1)) }, ErrInvalid},
		{"delete empty key", func(tx Txn) error { return tx.Delete("") }, ErrInvalid},
	}
	for _, tc := range bad {
		if _, err := s.Update(ctx, tc.fn); !errors.Is(err, tc.want) {
			t.Errorf("Update(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A Txn kept past its function refuses to work.
	var kept Txn
	s.View(ctx, func(_ int64, tx Txn) error { kept = tx; return nil })
	if _, err := kept.Get("a/2"); err == nil {
		t.Error("Get on a finished Txn succeeded")
	}
}

func TestRangeWhileWriting(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	var kvs []string
	for i := range 500 {
		kvs = append(kvs, fmt.Sprintf("s/%04d", i), "old")
	}
	put(t, s, append(kvs, "t/x", "other")...)
	// Re-seal pattern: rewrite every record under a prefix while ranging over it; delete some.
	visits := map[string]int{}
	rev, err := s.Update(ctx, func(tx Txn) error {
		return tx.Range("s/", func(kv KeyValue) error {
			visits[kv.Key]++
			if string(kv.Value) != "old" {
				return fmt.Errorf("visited %s after rewriting it", kv.Key)
			}
			if strings.HasSuffix(kv.Key, "7") {
				return tx.Delete(kv.Key)
			}
			return tx.Put(kv.Key, []byte("new"))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range visits {
		if n != 1 {
			t.Errorf("Range visited %s %d times, want once", k, n)
		}
	}
	if len(visits) != 500 {
		t.Errorf("Range visited %d keys, want 500", len(visits))
	}
	evs, _ := s.Events(ctx, "", rev-1, 0)
	if len(evs) != 500 || evs[0].Key != "s/0000" || evs[7].Type != Delete || evs[8].Type != Put {
		t.Errorf("Events of the rewrite: %d events, want 500 in key order with deletes", len(evs))
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	put(t, s, "b/1", "z", "a/2", "y", "a/1", "x") // 1: one revision, ordered by key
	put(t, s, "a/1", "x2")                        // 2: put over existing
	put(t, s, "a/2", "")                          // 3: delete
	put(t, s, "b/2", "w")                         // 4
	put(t, s, "a/3", "p", "a/4", "q", "a/5", "r") // 5
	_, err := s.Update(ctx, func(tx Txn) error {  // 6: several writes of one key collapse
		tx.Put("a/1", []byte("tmp"))
		tx.Delete("a/1")
		tx.Put("a/1", []byte("x3"))
		tx.Put("a/9", []byte("gone"))
		return tx.Delete("a/9")
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		prefix string
		since  int64
		limit  int
		want   string
	}{
		{"all", "", 0, 0, "1 put a/1=x; 1 put a/2=y; 1 put b/1=z; 2 put a/1=x2 (x@1); 3 delete a/2 (y@1); " +
			"4 put b/2=w; 5 put a/3=p; 5 put a/4=q; 5 put a/5=r; 6 put a/1=x3 (x2@2)"},
		{"since exclusive", "", 4, 0, "5 put a/3=p; 5 put a/4=q; 5 put a/5=r; 6 put a/1=x3 (x2@2)"},
		{"limit 1 finishes the revision", "", 0, 1, "1 put a/1=x; 1 put a/2=y; 1 put b/1=z"},
		{"limit 4", "", 0, 4, "1 put a/1=x; 1 put a/2=y; 1 put b/1=z; 2 put a/1=x2 (x@1)"},
		{"limit 3 at a boundary", "", 1, 3, "2 put a/1=x2 (x@1); 3 delete a/2 (y@1); 4 put b/2=w"},
		{"prefix", "b/", 0, 0, "1 put b/1=z; 4 put b/2=w"},
		{"prefix and limit", "a/", 2, 2, "3 delete a/2 (y@1); 5 put a/3=p; 5 put a/4=q; 5 put a/5=r"},
		{"prefix matches nothing", "c/", 0, 0, ""},
		{"at the current revision", "", 6, 0, ""},
		{"beyond the current revision", "", 100, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.Events(ctx, tc.prefix, tc.since, tc.limit)
			if got := describe(evs); err != nil || got != tc.want {
				t.Errorf("Events(%q, %d, %d) =\n  %s, %v\nwant\n  %s", tc.prefix, tc.since, tc.limit, got, err, tc.want)
			}
		})
	}
	if _, err := s.Events(ctx, "", -1, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Events(since -1) = %v, want ErrInvalid", err)
	}
	evs, _ := s.Events(ctx, "", 1, 1)
	evs[0].Value[0] = 'Q' // callers own what they get
	if again, _ := s.Events(ctx, "", 1, 1); string(again[0].Value) != "x2" {
		t.Errorf("Events returned shared memory: %q after the caller changed its copy", again[0].Value)
	}
}

func TestCompact(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	// Revision 1 has more entries than one compaction chunk.
	big := make([]string, 0, 2*(compactChunk+500))
	for i := range compactChunk + 500 {
		big = append(big, fmt.Sprintf("big/%06d", i), "v")
	}
	put(t, s, big...)
	for i := range 4 {
		put(t, s, "k", fmt.Sprint(i)) // revisions 2 to 5
	}
	if err := s.Compact(ctx, 6); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compact(6) at revision 5 = %v, want ErrInvalid", err)
	}
	if err := s.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, 2); err != nil { // below: a no-op
		t.Errorf("Compact(2) after Compact(3) = %v, want nil", err)
	}
	tests := []struct {
		since   int64
		want    string
		wantErr error
	}{
		{0, "", ErrCompacted},
		{2, "", ErrCompacted},
		{3, "4 put k=2 (1@3); 5 put k=3 (2@4)", nil},
		{4, "5 put k=3 (2@4)", nil},
	}
	for _, tc := range tests {
		evs, err := s.Events(ctx, "", tc.since, 0)
		if got := describe(evs); !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("Events(since %d) after Compact(3) = %s, %v, want %s, %v", tc.since, got, err, tc.want, tc.wantErr)
		}
	}
	if s.CompactedRev() != 3 {
		t.Errorf("CompactedRev() = %d, want 3", s.CompactedRev())
	}
	var left int
	s.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(bucketHistory).Stats().KeyN; return nil })
	if left != 2 {
		t.Errorf("history has %d entries after Compact(3), want 2", left)
	}
	// The data itself is untouched.
	s.View(ctx, func(rev int64, tx Txn) error {
		n := 0
		tx.Range("big/", func(KeyValue) error { n++; return nil })
		if n != compactChunk+500 || rev != 5 {
			t.Errorf("after Compact: %d big/ keys at rev %d, want %d at 5", n, rev, compactChunk+500)
		}
		return nil
	})
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

func TestSnapshotIsolation(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	put(t, s, "a", "1", "b", "1")
	err := s.View(ctx, func(rev int64, tx Txn) error {
		// A writer commits while this snapshot is open, without waiting for it.
		done := make(chan error)
		go func() {
			_, err := s.Update(ctx, func(w Txn) error {
				w.Put("a", []byte("2"))
				w.Put("c", []byte("2"))
				return w.Delete("b")
			})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-time.After(10 * time.Second):
			return errors.New("Update blocked behind an open View")
		}
		if s.Rev() != 2 {
			t.Errorf("Rev() after the concurrent Update = %d, want 2", s.Rev())
		}
		var got []string
		tx.Range("", func(kv KeyValue) error { got = append(got, kv.Key+"="+string(kv.Value)); return nil })
		if rev != 1 || strings.Join(got, " ") != "a=1 b=1" {
			t.Errorf("snapshot at rev %d sees %v, want rev 1 with a=1 b=1", rev, got)
		}
		if _, err := tx.Get("c"); !errors.Is(err, ErrNotFound) {
			t.Errorf("snapshot Get(c) = %v, want ErrNotFound", err)
		}
		if err := tx.Put("x", nil); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Put in View = %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChanged(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	ch := s.Changed()
	s.Update(ctx, func(Txn) error { return nil })
	s.Update(ctx, func(Txn) error { return errors.New("no") })
	select {
	case <-ch:
		t.Fatal("Changed fired without a new revision")
	default:
	}
	put(t, s, "k", "v")
	select {
	case <-ch:
	default:
		t.Fatal("Changed did not fire at a new revision")
	}
	next := s.Changed()
	if next == ch {
		t.Fatal("Changed returned the closed channel again")
	}
	s.Close()
	select {
	case <-next:
	default:
		t.Fatal("Close did not wake a waiter on Changed")
	}
	<-s.Changed() // closed for good
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

func TestClosed(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	put(t, s, "a", "1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	calls := map[string]func() error{
		"Update":  func() error { _, err := s.Update(ctx, func(Txn) error { return nil }); return err },
		"View":    func() error { return s.View(ctx, func(int64, Txn) error { return nil }) },
		"Events":  func() error { _, err := s.Events(ctx, "", 0, 0); return err },
		"Compact": func() error { return s.Compact(ctx, 1) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if s.Rev() != 1 {
		t.Errorf("Rev() after Close = %d, want 1", s.Rev())
	}
}

func TestUpdateContext(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Update(cancelled, func(tx Txn) error { return tx.Put("a", nil) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update(cancelled) = %v, want context.Canceled", err)
	}
	// Cancelled while fn runs: nothing is committed.
	c2, cancel2 := context.WithCancel(ctx)
	if _, err := s.Update(c2, func(tx Txn) error { cancel2(); return tx.Put("a", nil) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update(cancelled in fn) = %v, want context.Canceled", err)
	}
	// Waiting for the writer slot gives up at the deadline.
	hold, release := make(chan struct{}), make(chan struct{})
	go s.Update(ctx, func(tx Txn) error { close(hold); <-release; return nil })
	<-hold
	short, cancel3 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel3()
	if _, err := s.Update(short, func(Txn) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update behind a busy writer = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if s.Rev() != 0 {
		t.Errorf("Rev() = %d, want 0", s.Rev())
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{HistoryLimit: 1000})
	const writers, perWriter = 4, 50
	stop := make(chan struct{})
	var wg, readers sync.WaitGroup
	errs := make(chan error, 100)
	// Every Update bumps "n" and adds one "w/" key, so a snapshot at rev r has n = r and r keys.
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				_, err := s.Update(ctx, func(tx Txn) error {
					n := 0
					if kv, err := tx.Get("n"); err == nil {
						fmt.Sscan(string(kv.Value), &n)
					}
					tx.Put(fmt.Sprintf("w/%d/%03d", w, i), []byte("x"))
					return tx.Put("n", []byte(fmt.Sprint(n+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.View(ctx, func(rev int64, tx Txn) error {
					n, keys := 0, int64(0)
					if kv, err := tx.Get("n"); err == nil {
						fmt.Sscan(string(kv.Value), &n)
					}
					tx.Range("w/", func(KeyValue) error { keys++; return nil })
					if int64(n) != rev || keys != rev {
						return fmt.Errorf("snapshot at rev %d: n = %d, %d keys", rev, n, keys)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A watcher follows the history through Changed and must see every revision once, in order.
	readers.Add(1)
	go func() {
		defer readers.Done()
		var since int64
		for since < writers*perWriter {
			ch := s.Changed()
			evs, err := s.Events(ctx, "w/", since, 7)
			if err != nil {
				errs <- err
				return
			}
			for _, e := range evs {
				if e.Rev != since+1 {
					errs <- fmt.Errorf("watcher: event at rev %d after %d", e.Rev, since)
					return
				}
				since = e.Rev
			}
			if len(evs) == 0 {
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					errs <- fmt.Errorf("watcher stuck at %d", since)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Rev() != writers*perWriter {
		t.Errorf("Rev() = %d, want %d", s.Rev(), writers*perWriter)
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

func TestUpdatePanicReleasesWriter(t *testing.T) {
	t.Parallel()
	s := openTemp(t, BoltOptions{})
	func() {
		defer func() { recover() }()
		s.Update(ctx, func(tx Txn) error {
			tx.Put("a", []byte("1"))
			panic("bug in fn")
		})
	}()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rev, err := s.Update(short, func(tx Txn) error { return tx.Put("b", nil) }); rev != 1 || err != nil {
		t.Errorf("Update after a panicking one = %d, %v, want 1, nil", rev, err)
	}
	if _, err := s.Events(ctx, "a", 0, 0); err != nil {
		t.Error(err)
	}
}
