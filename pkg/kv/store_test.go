package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The contract of Store, run against every implementation (TestBoltContract, TestEtcdContract).

var ctx = context.Background()

// contract is what the suite needs of an implementation.
type contract struct {
	// open returns a new, empty store, closed when the test ends.
	open func(t testing.TB) Store
	// consecutive: revisions start at 0 and each is the previous plus one, and a key written
	// inside Update carries the revision being made (Bolt). Otherwise (etcd) revisions only grow,
	// with gaps, and written keys carry ModRev 0 until the commit.
	consecutive bool
}

var contractTests = []struct {
	name string
	// serial: must not run beside other tests of the suite (etcd's compaction is cluster-wide).
	serial bool
	fn     func(t *testing.T, c contract)
}{
	{"Compact", true, testCompact},
	{"Revisions", false, testRevisions},
	{"TxnOwnWrites", false, testTxnOwnWrites},
	{"RangeWhileWriting", false, testRangeWhileWriting},
	{"Events", false, testEvents},
	{"SnapshotIsolation", false, testSnapshotIsolation},
	{"Changed", false, testChanged},
	{"Closed", false, testClosed},
	{"UpdateContext", false, testUpdateContext},
	{"Concurrent", false, testConcurrent},
	{"UpdatePanic", false, testUpdatePanic},
}

// runContract runs the suite; serial cases first, then the rest in parallel.
func runContract(t *testing.T, c contract) {
	for _, tc := range contractTests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.serial {
				t.Parallel()
			}
			tc.fn(t, c)
		})
	}
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

// history numbers a test's revisions, so that expectations read the same on every store:
// at(0) is the store's revision before the test's first Update, at(i) the i-th Update's.
type history struct {
	s    Store
	revs []int64
}

func newHistory(s Store) *history { return &history{s: s, revs: []int64{s.Rev()}} }

func (h *history) put(t testing.TB, kvs ...string) int64 {
	t.Helper()
	rev := put(t, h.s, kvs...)
	h.add(rev)
	return rev
}

func (h *history) add(rev int64) { h.revs = append(h.revs, rev) }

func (h *history) at(i int) int64 { return h.revs[i] }

// number returns the index of rev among the test's revisions, or "?rev".
func (h *history) number(rev int64) string {
	for i, r := range h.revs {
		if r == rev && (i > 0 || rev == 0) {
			return fmt.Sprint(i)
		}
	}
	return fmt.Sprintf("?%d", rev)
}

// describe renders events as "rev type key=value (prev@modrev)", revisions numbered by the test.
func (h *history) describe(evs []Event) string {
	var s []string
	for _, e := range evs {
		d := fmt.Sprintf("%s %s %s", h.number(e.Rev), e.Type, e.Key)
		if e.Type == Put {
			d += "=" + string(e.Value)
		}
		if e.Prev != nil {
			d += fmt.Sprintf(" (%s@%s)", e.Prev.Value, h.number(e.Prev.ModRev))
		}
		s = append(s, d)
	}
	return strings.Join(s, "; ")
}

func testRevisions(t *testing.T, c contract) {
	s := c.open(t)
	if c.consecutive && (s.Rev() != 0 || s.CompactedRev() != 0) {
		t.Fatalf("new store: Rev() = %d, CompactedRev() = %d, want 0, 0", s.Rev(), s.CompactedRev())
	}
	h := newHistory(s)
	for i := 1; i <= 5; i++ {
		got, prev := h.put(t, fmt.Sprintf("k%d", i), "v"), h.at(i-1)
		if got <= prev || s.Rev() < got || (c.consecutive && (got != prev+1 || s.Rev() != got)) {
			t.Fatalf("Update #%d = %d (Rev() %d) after %d, want greater (consecutive: %v)", i, got, s.Rev(), prev, c.consecutive)
		}
	}
	last := h.at(5)
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
		if err != nil || rev < last || (c.consecutive && (rev != last || s.Rev() != last)) {
			t.Errorf("Update(%s) = %d, %v (Rev() %d), want the current revision %d, nil", tc.name, rev, err, s.Rev(), last)
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
		if kv, _ := tx.Get("k1"); string(kv.Value) != "v" || kv.ModRev != h.at(1) || rev < last {
			t.Errorf("after failed Update: k1 = %+v at rev %d, want v@%d at %d or later", kv, rev, h.at(1), last)
		}
		return nil
	})
	evs, err := s.Events(ctx, "", h.at(0), 0)
	if got := h.describe(evs); err != nil || got != "1 put k1=v; 2 put k2=v; 3 put k3=v; 4 put k4=v; 5 put k5=v" {
		t.Errorf("Events(0) = %s, %v; no-ops and failures must leave no history", got, err)
	}
}

func testTxnOwnWrites(t *testing.T, c contract) {
	s := c.open(t)
	h := newHistory(s)
	h.put(t, "a/1", "one", "a/2", "two", "b/1", "bee")
	var wantOwn int64 // etcd: known only at commit
	if c.consecutive {
		wantOwn = h.at(1) + 1
	}
	_, err := s.Update(ctx, func(tx Txn) error {
		if err := tx.Put("a/3", []byte("three")); err != nil {
			return err
		}
		if err := tx.Delete("a/1"); err != nil {
			return err
		}
		if kv, err := tx.Get("a/3"); err != nil || string(kv.Value) != "three" || kv.ModRev != wantOwn {
			t.Errorf("Get(a/3) = %+v, %v, want three@%d", kv, err, wantOwn)
		}
		if kv, err := tx.Get("a/2"); err != nil || string(kv.Value) != "two" || kv.ModRev != h.at(1) {
			t.Errorf("Get(a/2) = %+v, %v, want two@%d", kv, err, h.at(1))
		}
		if _, err := tx.Get("a/1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(deleted a/1) = %v, want ErrNotFound", err)
		}
		if err := tx.Delete("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(nope) = %v, want ErrNotFound", err)
		}
		if err := tx.Delete("a/1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(a/1) twice = %v, want ErrNotFound", err)
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

func testRangeWhileWriting(t *testing.T, c contract) {
	s := c.open(t)
	var kvs []string
	for i := range 500 {
		kvs = append(kvs, fmt.Sprintf("s/%04d", i), "old")
	}
	put(t, s, append(kvs, "t/x", "other")...)
	// Re-seal pattern: rewrite every record under a prefix while ranging over it; delete some.
	visits := map[string]int{}
	rev, err := s.Update(ctx, func(tx Txn) error {
		clear(visits) // etcd may run fn again
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

func testEvents(t *testing.T, c contract) {
	s := c.open(t)
	h := newHistory(s)
	h.put(t, "b/1", "z", "a/2", "y", "a/1", "x")   // 1: one revision, ordered by key
	h.put(t, "a/1", "x2")                          // 2: put over existing
	h.put(t, "a/2", "")                            // 3: delete
	h.put(t, "b/2", "w")                           // 4
	h.put(t, "a/3", "p", "a/4", "q", "a/5", "r")   // 5
	rev, err := s.Update(ctx, func(tx Txn) error { // 6: several writes of one key collapse
		tx.Put("a/1", []byte("tmp"))
		tx.Delete("a/1")
		tx.Put("a/1", []byte("x3"))
		tx.Put("a/9", []byte("gone"))
		return tx.Delete("a/9")
	})
	if err != nil {
		t.Fatal(err)
	}
	h.add(rev)
	tests := []struct {
		name   string
		prefix string
		since  int // the test's revision number; 100: beyond the current revision
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
			since := h.at(min(tc.since, 6))
			if tc.since > 6 {
				since += int64(tc.since)
			}
			evs, err := s.Events(ctx, tc.prefix, since, tc.limit)
			if got := h.describe(evs); err != nil || got != tc.want {
				t.Errorf("Events(%q, %d, %d) =\n  %s, %v\nwant\n  %s", tc.prefix, tc.since, tc.limit, got, err, tc.want)
			}
		})
	}
	if _, err := s.Events(ctx, "", -1, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Events(since -1) = %v, want ErrInvalid", err)
	}
	evs, _ := s.Events(ctx, "", h.at(1), 1)
	evs[0].Value[0] = 'Q' // callers own what they get
	if again, _ := s.Events(ctx, "", h.at(1), 1); string(again[0].Value) != "x2" {
		t.Errorf("Events returned shared memory: %q after the caller changed its copy", again[0].Value)
	}
	if evs[0].Type != Put || evs[0].Value == nil {
		t.Errorf("a Put event's value is nil")
	}
}

func testCompact(t *testing.T, c contract) {
	s := c.open(t)
	h := newHistory(s)
	h.put(t, "a", "1")
	for i := range 4 {
		h.put(t, "k", fmt.Sprint(i)) // revisions 2 to 5
	}
	if err := s.Compact(ctx, h.at(5)+1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compact(6) at revision 5 = %v, want ErrInvalid", err)
	}
	if err := s.Compact(ctx, h.at(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, h.at(2)); err != nil { // below: a no-op
		t.Errorf("Compact(2) after Compact(3) = %v, want nil", err)
	}
	tests := []struct {
		since   int
		want    string
		wantErr error
	}{
		{0, "", ErrCompacted},
		{2, "", ErrCompacted},
		{3, "4 put k=2 (1@3); 5 put k=3 (2@4)", nil},
		{4, "5 put k=3 (2@4)", nil},
	}
	for _, tc := range tests {
		evs, err := s.Events(ctx, "", h.at(tc.since), 0)
		if got := h.describe(evs); !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("Events(since %d) after Compact(3) = %s, %v, want %s, %v", tc.since, got, err, tc.want, tc.wantErr)
		}
	}
	if s.CompactedRev() != h.at(3) {
		t.Errorf("CompactedRev() = %d, want %d", s.CompactedRev(), h.at(3))
	}
	// The data itself is untouched.
	s.View(ctx, func(rev int64, tx Txn) error {
		a, errA := tx.Get("a")
		k, errK := tx.Get("k")
		if errA != nil || errK != nil || string(a.Value) != "1" || string(k.Value) != "3" || rev < h.at(5) {
			t.Errorf("after Compact: a = %q, %v, k = %q, %v at rev %d, want 1, 3", a.Value, errA, k.Value, errK, rev)
		}
		return nil
	})
}

func testSnapshotIsolation(t *testing.T, c contract) {
	s := c.open(t)
	h := newHistory(s)
	h.put(t, "a", "1", "b", "1")
	err := s.View(ctx, func(rev int64, tx Txn) error {
		// A writer commits while this snapshot is open, without waiting for it.
		done := make(chan error)
		var wrev int64
		go func() {
			var err error
			wrev, err = s.Update(ctx, func(w Txn) error {
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
		if s.Rev() < wrev || wrev <= rev {
			t.Errorf("Rev() after the concurrent Update %d = %d, want at least that, after the snapshot's %d", wrev, s.Rev(), rev)
		}
		var got []string
		tx.Range("", func(kv KeyValue) error { got = append(got, kv.Key+"="+string(kv.Value)); return nil })
		if rev < h.at(1) || (c.consecutive && rev != h.at(1)) || strings.Join(got, " ") != "a=1 b=1" {
			t.Errorf("snapshot at rev %d sees %v, want rev %d with a=1 b=1", rev, got, h.at(1))
		}
		if _, err := tx.Get("c"); !errors.Is(err, ErrNotFound) {
			t.Errorf("snapshot Get(c) = %v, want ErrNotFound", err)
		}
		if err := tx.Put("x", nil); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Put in View = %v, want ErrReadOnly", err)
		}
		if err := tx.Delete("a"); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Delete in View = %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testChanged(t *testing.T, c contract) {
	s := c.open(t)
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

func testClosed(t *testing.T, c contract) {
	s := c.open(t)
	rev := put(t, s, "a", "1")
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
	if s.Rev() < rev || (c.consecutive && s.Rev() != rev) {
		t.Errorf("Rev() after Close = %d, want %d", s.Rev(), rev)
	}
}

func testUpdateContext(t *testing.T, c contract) {
	s := c.open(t)
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
	s.View(ctx, func(_ int64, tx Txn) error {
		if _, err := tx.Get("a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(a) after cancelled Updates = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testConcurrent(t *testing.T, c contract) {
	s := c.open(t)
	base := s.Rev()
	const writers, perWriter = 4, 50
	stop := make(chan struct{})
	var wg, readers sync.WaitGroup
	errs := make(chan error, 100)
	// Every Update bumps "n" and adds one "w/" key, so every snapshot has n equal to the number
	// of keys (and to the revision, counted from the start, on a consecutive store).
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
					if int64(n) != keys || (c.consecutive && keys != rev-base) {
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
		since, seen := base, 0
		for seen < writers*perWriter {
			ch := s.Changed()
			evs, err := s.Events(ctx, "w/", since, 7)
			if err != nil {
				errs <- err
				return
			}
			for _, e := range evs {
				if e.Rev <= since || (c.consecutive && e.Rev != since+1) {
					errs <- fmt.Errorf("watcher: event at rev %d after %d", e.Rev, since)
					return
				}
				since = e.Rev
				seen++
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
	s.View(ctx, func(rev int64, tx Txn) error {
		if kv, err := tx.Get("n"); err != nil || string(kv.Value) != fmt.Sprint(writers*perWriter) {
			t.Errorf("n = %q, %v, want %d", kv.Value, err, writers*perWriter)
		}
		return nil
	})
	if c.consecutive && s.Rev() != base+writers*perWriter {
		t.Errorf("Rev() = %d, want %d", s.Rev(), base+writers*perWriter)
	}
}

func testUpdatePanic(t *testing.T, c contract) {
	s := c.open(t)
	base := s.Rev()
	func() {
		defer func() { recover() }()
		s.Update(ctx, func(tx Txn) error {
			tx.Put("a", []byte("1"))
			panic("bug in fn")
		})
	}()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rev, err := s.Update(short, func(tx Txn) error { return tx.Put("b", nil) }); rev <= 0 || err != nil {
		t.Errorf("Update after a panicking one = %d, %v, want a revision, nil", rev, err)
	}
	evs, err := s.Events(ctx, "a", base, 0)
	if err != nil || len(evs) != 0 {
		t.Errorf("Events(a) after a panicking Update = %d events, %v, want none", len(evs), err)
	}
}
