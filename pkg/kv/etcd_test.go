package kv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
)

// The etcd tests share one real 3-member cluster (pkg/kv/etcdtest, started on first use), each
// with a prefix of its own. Tests that stop members or compact are not parallel.

var (
	etcdOnce    sync.Once
	etcdCluster *etcdtest.Cluster
	etcdErr     error
	prefixSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdCluster != nil {
		etcdCluster.Close()
	}
	os.Exit(code)
}

func cluster(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	etcdOnce.Do(func() { etcdCluster, etcdErr = etcdtest.Start(etcdtest.Options{}) })
	if etcdErr != nil {
		t.Fatalf("start the etcd cluster for the tests: %v", etcdErr)
	}
	return etcdCluster
}

// newPrefix returns a prefix no other test uses.
func newPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/kvtest/%d-%d-%s/", os.Getpid(), prefixSeq.Add(1), name)
}

func openEtcd(t testing.TB, prefix string, timeout time.Duration) *Etcd {
	t.Helper()
	s, err := OpenEtcd(EtcdOptions{Endpoints: cluster(t).Endpoints(), Prefix: prefix, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEtcdContract(t *testing.T) {
	runContract(t, contract{
		open: func(t testing.TB) Store { return openEtcd(t, newPrefix(t), 5*time.Second) },
	})
}

func TestEtcdOptions(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := "http://" + l.Addr().String()
	l.Close()
	tests := []struct {
		name    string
		opts    EtcdOptions
		wantErr error
	}{
		{"no endpoints", EtcdOptions{Prefix: "/p/"}, ErrInvalid},
		{"no prefix", EtcdOptions{Endpoints: []string{nobody}}, ErrInvalid},
		{"prefix without slash", EtcdOptions{Endpoints: []string{nobody}, Prefix: "/p"}, ErrInvalid},
		{"nobody listening", EtcdOptions{Endpoints: []string{nobody}, Prefix: "/p/", DialTimeout: 300 * time.Millisecond,
			RequestTimeout: 300 * time.Millisecond}, ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := OpenEtcd(tc.opts)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("OpenEtcd(%s) = %v, want %v", tc.name, err, tc.wantErr)
			}
			if tc.wantErr == ErrUnavailable && !strings.Contains(fmt.Sprint(err), "connection refused") {
				t.Errorf("OpenEtcd(%s) = %v, want the reason (connection refused)", tc.name, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("OpenEtcd(%s) took %v", tc.name, d)
			}
		})
	}
}

// Two stores on different prefixes of one etcd see only their own keys and events; a store
// reopened on a prefix finds its data and history.
func TestEtcdPrefixes(t *testing.T) {
	t.Parallel()
	pa, pb := newPrefix(t), newPrefix(t)
	a, b := openEtcd(t, pa, 5*time.Second), openEtcd(t, pb, 5*time.Second)
	base := a.Rev()
	put(t, a, "k", "a")
	put(t, b, "k", "b", "only-b", "x")
	ra := put(t, a, "k2", "a")
	for _, tc := range []struct {
		s    Store
		want string
	}{{a, "k=a k2=a"}, {b, "k=b only-b=x"}} {
		tc.s.View(ctx, func(_ int64, tx Txn) error {
			var got []string
			tx.Range("", func(kv KeyValue) error { got = append(got, kv.Key+"="+string(kv.Value)); return nil })
			if strings.Join(got, " ") != tc.want {
				t.Errorf("Range(\"\") = %v, want %s", got, tc.want)
			}
			return nil
		})
	}
	evs, err := a.Events(ctx, "", base, 0)
	if err != nil || len(evs) != 2 || evs[1].Rev != ra {
		t.Errorf("Events of a = %v, %v, want its 2 puts", evs, err)
	}
	a.Close()
	again := openEtcd(t, pa, 5*time.Second)
	if again.Rev() < ra {
		t.Errorf("reopened: Rev() = %d, want at least %d", again.Rev(), ra)
	}
	evs, err = again.Events(ctx, "", base, 0)
	if err != nil || len(evs) != 2 {
		t.Errorf("reopened: Events = %v, %v, want 2", evs, err)
	}
}

// Range then write is serialisable across replicas: a key appearing in or disappearing from
// a range another Update read makes that Update run again.
func TestEtcdRangeSerialisable(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	stores := []*Etcd{openEtcd(t, prefix, 5*time.Second), openEtcd(t, prefix, 5*time.Second)}
	const n = 8
	run := func(fn func(i int, tx Txn) error) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := stores[i%2].Update(ctx, func(tx Txn) error { return fn(i, tx) }); err != nil {
					t.Errorf("Update #%d: %v", i, err)
				}
			}()
		}
		wg.Wait()
	}
	count := func() int {
		n := 0
		stores[0].View(ctx, func(_ int64, tx Txn) error {
			return tx.Range("oncall/", func(KeyValue) error { n++; return nil })
		})
		return n
	}
	// Insert if the range is empty: exactly one wins.
	run(func(i int, tx Txn) error {
		empty := true
		tx.Range("oncall/", func(KeyValue) error { empty = false; return nil })
		if empty {
			return tx.Put(fmt.Sprintf("oncall/%d", i), []byte("x"))
		}
		return nil
	})
	if got := count(); got != 1 {
		t.Fatalf("after %d concurrent insert-if-empty Updates: %d keys, want 1", n, got)
	}
	// Delete your own if another is left: exactly one stays.
	var kvs []string
	for i := range n {
		kvs = append(kvs, fmt.Sprintf("oncall/%d", i), "x")
	}
	put(t, stores[0], kvs...)
	run(func(i int, tx Txn) error {
		left := 0
		tx.Range("oncall/", func(KeyValue) error { left++; return nil })
		if left > 1 {
			return tx.Delete(fmt.Sprintf("oncall/%d", i))
		}
		return nil
	})
	if got := count(); got != 1 {
		t.Fatalf("after %d concurrent delete-if-another-is-left Updates: %d keys, want 1", n, got)
	}
}

// The Updates of one store take turns: 16 writers of one key through one store with a single
// attempt each all commit (racing through the compares, most would be overtaken); a writer that
// waits longer than the request timeout behind a stalled Update gets ErrUnavailable.
func TestEtcdOneWriterAtATime(t *testing.T) {
	prefix := newPrefix(t)
	s, err := OpenEtcd(EtcdOptions{Endpoints: cluster(t).Endpoints(), Prefix: prefix,
		RequestTimeout: time.Second, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, each = 16, 10
	incr := func(tx Txn) error {
		n := 0
		if kv, err := tx.Get("count"); err == nil {
			fmt.Sscan(string(kv.Value), &n)
		}
		return tx.Put("count", []byte(fmt.Sprint(n+1)))
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.Update(ctx, incr); err != nil {
					failed.Add(1)
					t.Errorf("Update: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	var count string
	s.View(ctx, func(_ int64, tx Txn) error {
		if kv, err := tx.Get("count"); err == nil {
			count = string(kv.Value)
		}
		return nil
	})
	if count != fmt.Sprint(writers*each) {
		t.Errorf("count = %q after %d Updates (%d failed), want %d", count, writers*each, failed.Load(), writers*each)
	}

	held := make(chan struct{})
	release := make(chan struct{})
	go s.Update(ctx, func(tx Txn) error {
		close(held)
		<-release
		return tx.Put("k", []byte("v"))
	})
	<-held
	start := time.Now()
	_, err = s.Update(ctx, incr)
	close(release)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("Update behind a stalled one = %v after %v, want ErrUnavailable after about 1s", err, time.Since(start))
	}
}

// Prefetch reads keys and whole prefixes in one request; Gets and Ranges after it return what
// they would without it, and the Update still conflicts with a write under a prefetched prefix.
func TestEtcdPrefetch(t *testing.T) {
	prefix := newPrefix(t)
	s, other := openEtcd(t, prefix, 5*time.Second), openEtcd(t, prefix, 5*time.Second)
	for _, k := range []string{"u/a", "r/a/1", "r/a/2", "r/b/1", "r/c/1", "r/c/2", "r/c/3"} {
		put(t, s, k, "v"+k)
	}
	old := rangePage
	rangePage = 2 // r/c/ does not fit in a page: Range reads it itself
	defer func() { rangePage = old }()
	keys := func(tx Txn, p string) string {
		var got []string
		if err := tx.Range(p, func(kv KeyValue) error { got = append(got, kv.Key+"="+string(kv.Value)); return nil }); err != nil {
			return err.Error()
		}
		return strings.Join(got, " ")
	}
	attempts := 0
	_, err := s.Update(ctx, func(tx Txn) error {
		attempts++
		if err := Prefetch(tx, []string{"u/a", "u/none"}, []string{"r/a/", "r/b/", "r/none/", "r/c/"}); err != nil {
			return err
		}
		if kv, err := tx.Get("u/a"); err != nil || string(kv.Value) != "vu/a" || kv.ModRev == 0 {
			t.Errorf("attempt %d: Get(u/a) = %+v, %v after Prefetch", attempts, kv, err)
		}
		if _, err := tx.Get("u/none"); !errors.Is(err, ErrNotFound) {
			t.Errorf("attempt %d: Get(u/none) = %v after Prefetch, want ErrNotFound", attempts, err)
		}
		wantA := "r/a/1=vr/a/1 r/a/2=vr/a/2"
		if attempts > 1 {
			wantA += " r/a/3=x"
		}
		for p, want := range map[string]string{"r/a/": wantA, "r/b/": "r/b/1=vr/b/1", "r/none/": "",
			"r/c/": "r/c/1=vr/c/1 r/c/2=vr/c/2 r/c/3=vr/c/3"} {
			if got := keys(tx, p); got != want {
				t.Errorf("attempt %d: Range(%s) = %q after Prefetch, want %q", attempts, p, got, want)
			}
		}
		if attempts == 1 {
			put(t, other, "r/a/3", "x") // under a prefetched prefix: this attempt must not commit
		}
		return tx.Put("done", []byte("1"))
	})
	if err != nil || attempts != 2 {
		t.Errorf("Update = %v after %d attempts, want success on the second (a key added under a prefetched prefix)", err, attempts)
	}
}

// Two registry replicas writing the same keys at once lose no update.
func TestEtcdTwoReplicas(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	stores := []*Etcd{openEtcd(t, prefix, 5*time.Second), openEtcd(t, prefix, 5*time.Second)}
	base := stores[0].Rev()
	const goroutines, each = 4, 25
	var wg sync.WaitGroup
	var committed, conflicts atomic.Int64
	for si, s := range stores {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					user := fmt.Sprintf("u/%d", (g+i)%3) // overlapping users
					for {
						_, err := s.Update(ctx, func(tx Txn) error {
							n := 0
							if kv, err := tx.Get(user); err == nil {
								fmt.Sscan(string(kv.Value), &n)
							}
							if err := tx.Put(fmt.Sprintf("t/%d/%d/%d", si, g, i), []byte(user)); err != nil {
								return err
							}
							return tx.Put(user, []byte(fmt.Sprint(n+1)))
						})
						if errors.Is(err, ErrConflict) {
							conflicts.Add(1)
							continue
						}
						if err != nil {
							t.Errorf("Update: %v", err)
							return
						}
						committed.Add(1)
						break
					}
				}
			}()
		}
	}
	wg.Wait()
	want := int64(len(stores) * goroutines * each)
	var sum, tokens int64
	stores[1].View(ctx, func(_ int64, tx Txn) error {
		tx.Range("u/", func(kv KeyValue) error {
			var n int64
			fmt.Sscan(string(kv.Value), &n)
			sum += n
			return nil
		})
		return tx.Range("t/", func(KeyValue) error { tokens++; return nil })
	})
	if committed.Load() != want || sum != want || tokens != want {
		t.Errorf("%d Updates committed, users count %d, %d token keys; want %d of each", committed.Load(), sum, tokens, want)
	}
	t.Logf("%d Updates through 2 replicas, %d gave up with ErrConflict and were retried", want, conflicts.Load())
	// Both replicas' events reach each one; what their watches kept equals etcd's history, as a
	// store opened now reads it.
	late := openEtcd(t, prefix, 5*time.Second)
	var seen []string
	for _, s := range []*Etcd{stores[0], stores[1], late} {
		evs, err := s.Events(ctx, "", base, 0)
		if err != nil || len(evs) != 2*int(want) {
			t.Errorf("Events(since the start) = %d events, %v, want %d", len(evs), err, 2*want)
		}
		seen = append(seen, describe(evs))
	}
	if seen[0] != seen[1] || seen[1] != seen[2] {
		t.Errorf("the replicas' recent events and etcd's history differ")
	}
}

// etcd's compaction is cluster-wide: a store that did not compact meets it in Events, when it
// reads etcd's history (a store serves what its watch has seen since it opened from memory).
func TestEtcdForeignCompaction(t *testing.T) {
	prefix := newPrefix(t)
	a := openEtcd(t, prefix, 5*time.Second)
	h := newHistory(a)
	h.put(t, "k", "1")
	h.put(t, "k", "2")
	h.put(t, "k", "3")
	if err := a.Compact(ctx, h.at(2)); err != nil {
		t.Fatal(err)
	}
	b := openEtcd(t, prefix, 5*time.Second)
	if _, err := b.Events(ctx, "", h.at(1), 0); !errors.Is(err, ErrCompacted) {
		t.Errorf("other store: Events(1) after Compact(2) = %v, want ErrCompacted", err)
	}
	if b.CompactedRev() < h.at(2) {
		t.Errorf("other store: CompactedRev() = %d after meeting the compaction, want %d", b.CompactedRev(), h.at(2))
	}
	if evs, err := b.Events(ctx, "", h.at(2), 0); err != nil || h.describe(evs) != "3 put k=3 (2@2)" {
		t.Errorf("other store: Events(2) = %s, %v, want 3 put k=3 (2@2)", h.describe(evs), err)
	}
}

// leader returns the index of the member that leads the cluster.
func leader(t *testing.T, c *etcdtest.Cluster) int {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	i, err := c.Leader(sctx)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func waitHealthy(t *testing.T, c *etcdtest.Cluster, members ...int) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, i := range members {
		if err := c.WaitHealthy(wctx, i); err != nil {
			t.Fatal(err)
		}
	}
}

// kill -9 of the leader while two replicas write: no Update is lost or half applied, and the
// writes go on with the two members left.
func TestEtcdKillLeaderDuringWrites(t *testing.T) {
	c := cluster(t)
	prefix := newPrefix(t)
	stores := []*Etcd{openEtcd(t, prefix, 2*time.Second), openEtcd(t, prefix, 2*time.Second)}
	victim := leader(t, c)
	const writers, each = 4, 60
	type result struct {
		key string
		err error
	}
	results := make(chan result, writers*each)
	progress := make(chan struct{}, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for i := range each {
				key := fmt.Sprintf("%d/%03d", w, i)
				_, err := s.Update(ctx, func(tx Txn) error {
					n := 0
					if kv, err := tx.Get("count"); err == nil {
						fmt.Sscan(string(kv.Value), &n)
					}
					if err := tx.Put("a/"+key, []byte("x")); err != nil {
						return err
					}
					if err := tx.Put("b/"+key, []byte("x")); err != nil {
						return err
					}
					return tx.Put("count", []byte(fmt.Sprint(n+1)))
				})
				results <- result{key, err}
				progress <- struct{}{}
			}
		}()
	}
	for range writers * each / 4 {
		<-progress
	}
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	var ok, failed int
	var okKeys, failedKeys []string
	for r := range results {
		if r.err != nil {
			failed++
			failedKeys = append(failedKeys, r.key)
			if !errors.Is(r.err, ErrUnavailable) && !errors.Is(r.err, ErrConflict) {
				t.Errorf("Update during the failover: %v, want ErrUnavailable or ErrConflict", r.err)
			}
			continue
		}
		ok++
		okKeys = append(okKeys, r.key)
	}
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c, 0, 1, 2)
	stores[0].View(ctx, func(_ int64, tx Txn) error {
		has := func(k string) bool { _, err := tx.Get(k); return err == nil }
		for _, k := range okKeys {
			if !has("a/"+k) || !has("b/"+k) {
				t.Errorf("Update %s succeeded but is not whole in the store", k)
			}
		}
		applied := len(okKeys)
		for _, k := range failedKeys {
			if a, b := has("a/"+k), has("b/"+k); a != b {
				t.Errorf("Update %s failed and is half applied (a %v, b %v)", k, a, b)
			} else if a {
				applied++ // failed as the leader died, yet committed: the outcome was unknown
			}
		}
		kv, err := tx.Get("count")
		if err != nil || string(kv.Value) != fmt.Sprint(applied) {
			t.Errorf("count = %q, %v, want %d (the Updates applied)", kv.Value, err, applied)
		}
		return nil
	})
	t.Logf("leader m%d killed: %d Updates committed, %d failed during the election", victim, ok, failed)
	if ok < writers*each/2 {
		t.Errorf("only %d of %d Updates committed: writes did not go on with two members", ok, writers*each)
	}
}

// Two members gone: Update, View and Events fail with ErrUnavailable within the request
// timeout; the same store works again when they are back, and its watch wakes Changed again.
func TestEtcdQuorumLost(t *testing.T) {
	c := cluster(t)
	prefix := newPrefix(t)
	const timeout = time.Second
	s := openEtcd(t, prefix, timeout)
	other := openEtcd(t, prefix, timeout)
	base := s.Rev()
	put(t, s, "k", "1")
	keep := leader(t, c)
	var stopped []int
	for i := range c.Members() {
		if i == keep {
			continue
		}
		// SIGKILL: a clean stop (SIGTERM) ends the same way, but etcd takes about 7 s to close the
		// streams of connected clients first (etcdtest's own test stops and restarts a member).
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
		stopped = append(stopped, i)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Update", func() error {
			_, err := s.Update(ctx, func(tx Txn) error { return tx.Put("k", []byte("2")) })
			return err
		}},
		{"View", func() error { return s.View(ctx, func(int64, Txn) error { return nil }) }},
		{"Events", func() error { _, err := s.Events(ctx, "", base, 0); return err }},
		{"Compact", func() error { return s.Compact(ctx, base) }},
	}
	for _, tc := range calls {
		start := time.Now()
		err := tc.call()
		d := time.Since(start)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s without quorum = %v, want ErrUnavailable", tc.name, err)
		} else {
			t.Logf("%s without quorum after %v: %v", tc.name, d.Round(time.Millisecond), err)
		}
		if d > 3*timeout {
			t.Errorf("%s without quorum took %v, want about the %v request timeout", tc.name, d, timeout)
		}
	}
	changed := s.Changed()
	for _, i := range stopped {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	waitHealthy(t, c, 0, 1, 2)
	// The store recovers by itself; the first call may still meet the election.
	var rev int64
	var err error
	for range 20 {
		if rev, err = other.Update(ctx, func(tx Txn) error { return tx.Put("k", []byte("3")) }); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Update after quorum is back: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("Changed did not fire for another replica's write after quorum came back")
	}
	evs, err := s.Events(ctx, "", base, 0)
	if err != nil || len(evs) != 2 || evs[1].Rev != rev || string(evs[1].Value) != "3" {
		t.Errorf("Events after quorum is back = %v, %v, want k=1 then k=3 (nothing of the refused Update)", evs, err)
	}
}

// Range reads etcd a page at a time; with pages of 7 keys, the contract's ranges cross many.
func TestEtcdRangePages(t *testing.T) {
	defer func(n int) { rangePage = n }(rangePage)
	rangePage = 7
	c := contract{open: func(t testing.TB) Store { return openEtcd(t, newPrefix(t), 5*time.Second) }}
	t.Run("RangeWhileWriting", func(t *testing.T) { testRangeWhileWriting(t, c) })
	t.Run("TxnOwnWrites", func(t *testing.T) { testTxnOwnWrites(t, c) })
	t.Run("stop early", func(t *testing.T) {
		s := c.open(t)
		var kvs []string
		for i := range 30 {
			kvs = append(kvs, fmt.Sprintf("p/%02d", i), "x")
		}
		put(t, s, kvs...)
		stop := errors.New("stop")
		var got []string
		err := s.View(ctx, func(_ int64, tx Txn) error {
			return tx.Range("p/", func(kv KeyValue) error {
				if got = append(got, kv.Key); len(got) == 10 {
					return stop
				}
				return nil
			})
		})
		if err != stop || len(got) != 10 || got[9] != "p/09" {
			t.Errorf("Range stopped at the 10th key = %v, %v", got, err)
		}
	})
}
