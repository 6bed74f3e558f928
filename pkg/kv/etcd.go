package kv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EtcdOptions configure OpenEtcd.
type EtcdOptions struct {
	// Endpoints are the etcd members' client URLs (https://host:2379, or http:// on loopback).
	Endpoints []string
	// Prefix is put before every key the store writes; it must end in "/" and must not be a
	// prefix of another store's prefix on the same etcd (e.g. "/pam-totp/site-a/").
	Prefix string
	// TLS is the client's TLS configuration (CA, client certificate); nil speaks plain HTTP.
	TLS *tls.Config
	// DialTimeout bounds connecting to etcd (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds every round trip to etcd (default 5 s): an unreachable etcd or one
	// without quorum makes a call fail after it with ErrUnavailable, never hang.
	RequestTimeout time.Duration
	// MaxAttempts bounds the attempts of one Update whose reads were changed by another writer
	// before it could commit (default 32); then Update returns ErrConflict.
	MaxAttempts int
}

// Etcd is a Store in an etcd cluster, under a key prefix. Several Etcd values, in one process
// or in several registry replicas, may share a prefix: their Updates are serialisable together.
type Etcd struct {
	cli      *clientv3.Client
	eps      string
	data     string // Prefix + "d/": the keys of the store
	guard    string // Prefix + "g": written by every Update that deletes; see doc.go
	timeout  time.Duration
	attempts int

	rev       atomic.Int64 // highest etcd revision seen
	compacted atomic.Int64 // highest compaction seen or made

	// writeSlot lets one Update of this store run at a time (see Update); answered counts the
	// Updates that held it and ended otherwise than with ErrUnavailable.
	writeSlot chan struct{}
	answered  atomic.Int64

	mu       sync.Mutex
	closed   bool
	running  sync.WaitGroup
	changed  chan struct{}
	notified int64 // revision Changed last fired for

	stopWatch context.CancelFunc
	watchDone chan struct{}
	watchCtx  context.Context // the background watch's, for its progress requests

	// The background watch keeps the prefix's recent events, so that Events after a recent
	// revision is served from memory instead of a watch through etcd's history (which etcd
	// catches up in steps of 100 ms). It holds every event in (from, upto], whole revisions.
	cmu      sync.Mutex
	recent   []Event
	size     int           // bytes of keys and values in recent
	from     int64         // recent holds every event after from...
	upto     int64         // ...up to and including upto (the watch is known to have passed it)
	advanced chan struct{} // closed and replaced when upto grows
}

var _ Store = (*Etcd)(nil)

const (
	recentMax      = 10000    // events the background watch keeps for Events
	recentMaxBytes = 32 << 20 // and their bytes at most
)

// rangePage is how many keys a Txn's Range reads from etcd at a time (a variable for tests).
var rangePage = 1000

// OpenEtcd connects to etcd and starts watching the prefix. It fails if etcd does not answer
// within the request timeout.
func OpenEtcd(opts EtcdOptions) (*Etcd, error) {
	if len(opts.Endpoints) == 0 {
		return nil, fmt.Errorf("open etcd store: no endpoints: %w", ErrInvalid)
	}
	if opts.Prefix == "" || !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("open etcd store: prefix %q must be non-empty and end in /: %w", opts.Prefix, ErrInvalid)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 32
	}
	eps := strings.Join(opts.Endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            opts.Endpoints,
		TLS:                  opts.TLS,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: opts.RequestTimeout,
		Logger:               zap.NewNop(), // errors reach the caller; the client's retries are noise
	})
	if err != nil {
		return nil, fmt.Errorf("open etcd store at %s: %w", eps, err)
	}
	s := &Etcd{
		cli: cli, eps: eps, data: opts.Prefix + "d/", guard: opts.Prefix + "g",
		timeout: opts.RequestTimeout, attempts: opts.MaxAttempts,
		changed: make(chan struct{}), watchDone: make(chan struct{}), advanced: make(chan struct{}),
		writeSlot: make(chan struct{}, 1),
	}
	rev, err := s.currentRev(context.Background())
	if err != nil {
		cli.Close()
		if why := probe(opts); why != "" {
			return nil, fmt.Errorf("open etcd store at %s: %w (%s)", eps, err, why)
		}
		return nil, fmt.Errorf("open etcd store at %s: %w", eps, err)
	}
	s.notified, s.from, s.upto = rev, rev, rev
	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch, s.watchCtx = cancel, clientv3.WithRequireLeader(wctx)
	go s.watchLoop(s.watchCtx, rev)
	return s, nil
}

// probe connects to each endpoint as the client would, to say why none answered (gRPC reports
// only a timeout): a refused connection, a TLS handshake failure, a client certificate refused.
func probe(opts EtcdOptions) string {
	var why []string
	for _, ep := range opts.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		conn, err := net.DialTimeout("tcp", u.Host, opts.DialTimeout)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		if u.Scheme == "https" {
			tc := &tls.Config{}
			if opts.TLS != nil {
				tc = opts.TLS.Clone()
			}
			tc.ServerName = u.Hostname()
			tc.NextProtos = []string{"h2"}
			tconn := tls.Client(conn, tc)
			tconn.SetDeadline(time.Now().Add(opts.DialTimeout))
			err = tconn.Handshake()
			if err == nil {
				// TLS 1.3 servers refuse a client certificate after the handshake.
				tconn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, rerr := tconn.Read(make([]byte, 1)); rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
					err = rerr
				}
			}
			if err != nil {
				why = append(why, fmt.Sprintf("%s: %v", ep, err))
			}
		}
		conn.Close()
	}
	return strings.Join(why, "; ")
}

// Endpoints returns the etcd endpoints the store was opened with, for messages.
func (s *Etcd) Endpoints() string { return s.eps }

// Rev implements Store: the highest etcd revision this store has seen (its own commits, answers
// to its reads, and its watch on the prefix).
func (s *Etcd) Rev() int64 { return s.rev.Load() }

// CompactedRev implements Store: the highest compaction this store made or met. etcd's
// compaction is cluster-wide, so another client's (or etcd's automatic) compaction can be
// ahead of it until Events meets it and returns ErrCompacted.
func (s *Etcd) CompactedRev() int64 { return s.compacted.Load() }

// Changed implements Store.
func (s *Etcd) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Etcd) noteRev(rev int64) { storeMax(&s.rev, rev) }

func (s *Etcd) noteCompacted(rev int64) { storeMax(&s.compacted, rev) }

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// notify wakes the waiters on Changed if rev is newer than the last revision it fired for.
func (s *Etcd) notify(rev int64) {
	s.noteRev(rev)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || rev <= s.notified {
		return
	}
	s.notified = rev
	close(s.changed)
	s.changed = make(chan struct{})
}

// wake wakes the waiters on Changed without a new revision.
func (s *Etcd) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// begin registers a running call, or returns ErrClosed.
func (s *Etcd) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.running.Add(1)
	return nil
}

// rpc returns the context for one round trip: the caller's, bounded by the request timeout, and
// refused at once by a member that has no leader.
func (s *Etcd) rpc(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return clientv3.WithRequireLeader(ctx), cancel
}

// fail wraps an error of a round trip to etcd: the caller's own cancellation stays itself, a
// compacted revision becomes ErrCompacted, and no answer or no leader becomes ErrUnavailable.
func (s *Etcd) fail(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if s.isClosed() {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("%s: %w", what, ErrCompacted)
	case errors.Is(err, rpctypes.ErrNoLeader):
		return fmt.Errorf("%s: etcd at %s has no leader (quorum lost?): %w: %w", what, s.eps, ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("%s: more compares or operations than etcd's --max-txn-ops allows: %w", what, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%s: larger than etcd's --max-request-bytes allows: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("%s: etcd at %s did not answer within %v (unreachable, or quorum lost): %w: %w", what, s.eps, s.timeout, ErrUnavailable, err)
	case status.Code(err) == codes.Unavailable, etcdCode(err) == codes.Unavailable:
		// Unreachable, or the server's own "request timed out", "leader changed", "stopped".
		return fmt.Errorf("%s: etcd at %s: %w: %w", what, s.eps, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: etcd at %s: %w", what, s.eps, err)
}

// etcdCode returns the gRPC code of an error etcd's client turned into an rpctypes.EtcdError.
func etcdCode(err error) codes.Code {
	var e rpctypes.EtcdError
	if errors.As(err, &e) {
		return e.Code()
	}
	return codes.Unknown
}

func (s *Etcd) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// currentRev asks etcd for its current revision (a linearizable read).
func (s *Etcd) currentRev(ctx context.Context) (int64, error) {
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.guard, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail(ctx, "kv: read revision", err)
	}
	s.noteRev(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// Update implements Store. fn runs on a snapshot at etcd's current revision; its writes are
// buffered and committed as one etcd transaction that compares what fn read (see doc.go). When
// another writer changed any of it first, fn runs again on a newer snapshot, at most
// MaxAttempts times in all, then Update returns ErrConflict. So fn may run more than once and
// must not act outside tx. An error other than ErrConflict from the commit itself (etcd lost
// mid-request) leaves the outcome unknown, as with any networked database: the transaction was
// applied whole or not at all.
//
// The Updates of one Etcd run one at a time, as bbolt's do: writers of one process that raced
// through the compares would mostly overtake each other (every registry change writes the audit
// head), each retry costing round trips, until some ran out of attempts. Only other processes'
// writers race. An Update waits for the ones before it as long as etcd answers them; when none
// has ended otherwise than with ErrUnavailable for a request timeout, it returns ErrUnavailable.
func (s *Etcd) Update(ctx context.Context, fn func(Txn) error) (rev int64, err error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.running.Done()
	if err := s.takeWriteSlot(ctx); err != nil {
		return 0, err
	}
	defer func() {
		if !errors.Is(err, ErrUnavailable) {
			s.answered.Add(1)
		}
		<-s.writeSlot
	}()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		rev, committed, err := s.try(ctx, fn)
		if err != nil || committed {
			return rev, err
		}
		if attempt >= s.attempts {
			return 0, fmt.Errorf("kv: update: %d attempts, each overtaken by another writer: %w", attempt, ErrConflict)
		}
		// Back off for a random while that grows with the attempts, so that contending writers
		// spread out instead of colliding again.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 7)))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// takeWriteSlot waits until no other Update of s runs. It gives up with ErrUnavailable when no
// Update of s has ended otherwise than with ErrUnavailable for a whole request timeout while it
// waited: those before it are held up by an etcd that is slow or gone. A queue that moves is
// waited for.
func (s *Etcd) takeWriteSlot(ctx context.Context) error {
	select {
	case s.writeSlot <- struct{}{}:
		return nil
	default:
	}
	tick := time.NewTicker(s.timeout)
	defer tick.Stop()
	seen := s.answered.Load()
	for {
		select {
		case s.writeSlot <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if n := s.answered.Load(); n != seen {
				seen = n
				continue
			}
			return fmt.Errorf("kv: update: waited %v for an earlier update of this store (etcd at %s slow or unreachable): %w",
				s.timeout, s.eps, ErrUnavailable)
		}
	}
}

// try runs fn once and commits. committed is false when the compares failed.
func (s *Etcd) try(ctx context.Context, fn func(Txn) error) (rev int64, committed bool, err error) {
	read, err := s.currentRev(ctx)
	if err != nil {
		return 0, false, err
	}
	t := &etcdTxn{s: s, ctx: ctx, rev: read, writable: true,
		cache: map[string]*KeyValue{}, reads: map[string]int64{}, writes: map[string][]byte{}}
	err = fn(t)
	t.done = true
	if err != nil {
		return 0, false, err
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	cmps, ops, err := t.commitPlan()
	if err != nil {
		return 0, false, err
	}
	if len(ops) == 0 {
		return read, true, nil
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, false, s.fail(ctx, "kv: update: commit (applied whole or not at all; not known which)", err)
	}
	if !resp.Succeeded {
		s.noteRev(resp.Header.Revision)
		return 0, false, nil
	}
	rev = resp.Header.Revision
	s.notify(rev)
	return rev, true, nil
}

// View implements Store: fn reads at etcd's current revision, pinned.
func (s *Etcd) View(ctx context.Context, fn func(rev int64, tx Txn) error) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.running.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	rev, err := s.currentRev(ctx)
	if err != nil {
		return err
	}
	t := &etcdTxn{s: s, ctx: ctx, rev: rev, cache: map[string]*KeyValue{}}
	err = fn(rev, t)
	t.done = true
	return err
}

// Events implements Store. It reads etcd's history through a watch from since on the prefix,
// with the previous values, until a progress notification says the watch has passed the
// revision read at the start.
func (s *Etcd) Events(ctx context.Context, prefix string, since int64, limit int) ([]Event, error) {
	if since < 0 {
		return nil, fmt.Errorf("kv: events since %d: %w", since, ErrInvalid)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.running.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cur, err := s.currentRev(ctx)
	if err != nil {
		return nil, err
	}
	if c := s.compacted.Load(); since < c {
		return nil, fmt.Errorf("kv: events since %d: history starts after %d: %w", since, c, ErrCompacted)
	}
	if since >= cur {
		return nil, nil
	}
	if evs, ok, err := s.recentEvents(ctx, prefix, since, limit, cur); ok || err != nil {
		return evs, err
	}
	// Older than the recent events: watch from since itself, not since+1: etcd then refuses exactly when since is below its
	// compacted revision, our rule. since's own events are skipped.
	start := max(since, 1)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	w := clientv3.NewWatcher(s.cli) // a stream of its own: progress requests answer for it alone
	defer w.Close()
	key := s.data + prefix
	wch := w.Watch(wctx, key, clientv3.WithRange(clientv3.GetPrefixRangeEnd(key)), clientv3.WithRev(start),
		clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	// etcd answers a progress request only once the watch has caught up with the history, which
	// its server does in steps of 100 ms; ask again until it answers.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	idle := time.NewTimer(s.timeout)
	defer idle.Stop()
	var out []Event
	var last int64
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				return nil, s.fail(ctx, "kv: events", errors.New("watch closed"))
			}
			if resp.CompactRevision != 0 {
				s.noteCompacted(resp.CompactRevision)
				return nil, fmt.Errorf("kv: events since %d: history starts after %d: %w", since, resp.CompactRevision, ErrCompacted)
			}
			if err := resp.Err(); err != nil {
				return nil, s.fail(ctx, "kv: events", err)
			}
			idle.Reset(s.timeout)
			// etcd never splits one revision's events over two responses.
			for _, ev := range resp.Events {
				r := ev.Kv.ModRevision
				if r <= since {
					continue
				}
				if r > cur || (limit > 0 && len(out) >= limit && r != last) {
					return out, nil
				}
				out = append(out, s.event(ev))
				last = r
			}
			if last >= cur || (limit > 0 && len(out) >= limit) ||
				(resp.IsProgressNotify() && resp.Header.Revision >= cur) {
				return out, nil
			}
		case <-poll.C:
			// Bounded: the request waits for a stream that may be reconnecting.
			pctx, pcancel := context.WithTimeout(wctx, s.timeout)
			err := w.RequestProgress(pctx)
			pcancel()
			if err != nil {
				return nil, s.fail(ctx, "kv: events: request progress", err)
			}
		case <-idle.C:
			return nil, s.fail(ctx, "kv: events", context.DeadlineExceeded)
		}
	}
}

func (s *Etcd) event(ev *clientv3.Event) Event {
	e := Event{Rev: ev.Kv.ModRevision, Key: strings.TrimPrefix(string(ev.Kv.Key), s.data)}
	if ev.Type == clientv3.EventTypePut {
		e.Type, e.Value = Put, append([]byte{}, ev.Kv.Value...)
	} else {
		e.Type = Delete
	}
	if ev.PrevKv != nil {
		e.Prev = &KeyValue{Key: e.Key, Value: append([]byte{}, ev.PrevKv.Value...), ModRev: ev.PrevKv.ModRevision}
	}
	return e
}

// Compact implements Store with etcd's compaction, which is cluster-wide: it drops the history
// of every prefix on this etcd, so with several stores on one etcd leave compaction to one of
// them or to etcd's --auto-compaction-retention.
func (s *Etcd) Compact(ctx context.Context, rev int64) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.running.Done()
	if rev <= s.compacted.Load() {
		return nil
	}
	cur, err := s.currentRev(ctx)
	if err != nil {
		return err
	}
	if rev > cur {
		return fmt.Errorf("kv: compact to %d beyond revision %d: %w", rev, cur, ErrInvalid)
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	if _, err := s.cli.Compact(rctx, rev); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return s.fail(ctx, fmt.Sprintf("kv: compact to %d", rev), err)
	}
	s.noteCompacted(rev)
	return nil
}

// Close implements Store: it refuses new calls, waits for running ones (each bounded by the
// request timeout), stops the watch and closes the connection.
func (s *Etcd) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.running.Wait()
	s.stopWatch()
	<-s.watchDone
	err := s.cli.Close()
	s.mu.Lock()
	close(s.changed) // and never replaced: Changed returns a closed channel from now on
	s.mu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store at %s: %w", s.eps, err)
	}
	return nil
}

// watchLoop follows the prefix from rev, keeps its recent events and fires Changed at each new
// revision, also for the writes of other stores on the prefix (other registry replicas). When
// the watch ends (no leader) it starts again after a growing pause from where it was, until
// Close; when that history is compacted, it starts again from the current revision.
func (s *Etcd) watchLoop(ctx context.Context, rev int64) {
	defer close(s.watchDone)
	pause := 50 * time.Millisecond
	for ctx.Err() == nil {
		s.cmu.Lock()
		next := s.upto + 1
		s.cmu.Unlock()
		wch := s.cli.Watch(ctx, s.data, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithPrevKV())
		for resp := range wch {
			if resp.CompactRevision != 0 {
				s.noteCompacted(resp.CompactRevision)
				if cur, err := s.currentRev(ctx); err == nil {
					s.resetRecent(cur)
				}
				// Missed history: wake the readers, whose Events will say ErrCompacted.
				s.wake()
				break
			}
			if resp.Err() != nil {
				break
			}
			pause = 50 * time.Millisecond
			if resp.IsProgressNotify() {
				s.advance(nil, resp.Header.Revision)
				continue
			}
			if n := len(resp.Events); n > 0 {
				evs := make([]Event, n)
				for i, ev := range resp.Events {
					evs[i] = s.event(ev)
				}
				r := evs[n-1].Rev
				s.advance(evs, r)
				s.notify(r)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// advance adds the events of whole revisions up to upto, which the watch has passed, and drops
// the oldest revisions beyond the bounds.
func (s *Etcd) advance(evs []Event, upto int64) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if upto <= s.upto {
		return
	}
	for _, e := range evs {
		s.size += eventSize(e)
	}
	s.recent = append(s.recent, evs...)
	s.upto = upto
	drop := 0
	for len(s.recent)-drop > recentMax || (s.size > recentMaxBytes && drop < len(s.recent)) {
		r := s.recent[drop].Rev
		for drop < len(s.recent) && s.recent[drop].Rev == r {
			s.size -= eventSize(s.recent[drop])
			drop++
		}
		s.from = r
	}
	if drop > 0 {
		s.recent = slices.Clone(s.recent[drop:])
	}
	close(s.advanced)
	s.advanced = make(chan struct{})
}

// resetRecent forgets the recent events and starts them again after rev.
func (s *Etcd) resetRecent(rev int64) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.recent, s.size, s.from, s.upto = nil, 0, rev, rev
}

func eventSize(e Event) int {
	n := len(e.Key) + len(e.Value) + 64
	if e.Prev != nil {
		n += len(e.Prev.Value)
	}
	return n
}

// recentEvents answers Events from the recent events when they reach back to since; ok is
// false when they do not. It waits until the watch has passed cur, asking etcd for a progress
// notification, which a watch that has caught up gets at once.
func (s *Etcd) recentEvents(ctx context.Context, prefix string, since int64, limit int, cur int64) (out []Event, ok bool, err error) {
	deadline := time.NewTimer(s.timeout)
	defer deadline.Stop()
	for ask := true; ; {
		s.cmu.Lock()
		from, upto, advanced := s.from, s.upto, s.advanced
		if since < from {
			s.cmu.Unlock()
			return nil, false, nil
		}
		if upto >= cur {
			out = s.collect(prefix, since, limit)
			s.cmu.Unlock()
			return out, true, nil
		}
		s.cmu.Unlock()
		if ask {
			ask = false
			pctx, cancel := context.WithTimeout(s.watchCtx, s.timeout)
			err := s.cli.RequestProgress(pctx)
			cancel()
			if err != nil {
				return nil, false, s.fail(ctx, "kv: events: request progress", err)
			}
		}
		select {
		case <-advanced:
		case <-time.After(50 * time.Millisecond):
			ask = true // the watch may not have caught up to answer; ask again
		case <-deadline.C:
			return nil, false, s.fail(ctx, "kv: events: the watch did not reach revision "+fmt.Sprint(cur), context.DeadlineExceeded)
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// collect copies the recent events after since under prefix, at most limit but whole revisions.
// s.cmu is held.
func (s *Etcd) collect(prefix string, since int64, limit int) []Event {
	var out []Event
	var last int64
	i := sort.Search(len(s.recent), func(i int) bool { return s.recent[i].Rev > since })
	for _, e := range s.recent[i:] {
		if limit > 0 && len(out) >= limit && e.Rev != last {
			break
		}
		if !strings.HasPrefix(e.Key, prefix) {
			continue
		}
		c := Event{Rev: e.Rev, Type: e.Type, Key: e.Key}
		if e.Type == Put {
			c.Value = append([]byte{}, e.Value...)
		}
		if e.Prev != nil {
			c.Prev = &KeyValue{Key: e.Key, Value: append([]byte{}, e.Prev.Value...), ModRev: e.Prev.ModRev}
		}
		out = append(out, c)
		last = e.Rev
	}
	return out
}

// etcdTxn is a Txn on a snapshot at rev. A writable one buffers its writes, which its reads
// see, and remembers what it read for the commit's compares.
type etcdTxn struct {
	s        *Etcd
	ctx      context.Context
	rev      int64
	writable bool
	done     bool

	cache  map[string]*KeyValue // store state at rev of keys read (nil: absent)
	reads  map[string]int64     // writable: keys read from the store and their ModRev (0: absent)
	ranges []string             // writable: prefixes ranged over
	writes map[string][]byte    // writable: each written key's value now (nil: deleted)
	wkeys  []string             // writable: keys of writes, sorted

	whole map[string][]*KeyValue // prefixes read whole by prefetch: their keys at rev, sorted
}

// stored returns key's state at the snapshot's revision, and records the read.
func (t *etcdTxn) stored(key string) (*KeyValue, error) {
	kv, ok := t.cache[key]
	if !ok {
		rctx, cancel := t.s.rpc(t.ctx)
		defer cancel()
		resp, err := t.s.cli.Get(rctx, t.s.data+key, clientv3.WithRev(t.rev))
		if err != nil {
			return nil, t.s.fail(t.ctx, fmt.Sprintf("get %q at revision %d", key, t.rev), err)
		}
		if len(resp.Kvs) == 1 {
			kv = &KeyValue{Key: key, Value: append([]byte{}, resp.Kvs[0].Value...), ModRev: resp.Kvs[0].ModRevision}
		}
		t.cache[key] = kv
	}
	if t.writable {
		if _, seen := t.reads[key]; !seen {
			t.reads[key] = 0
			if kv != nil {
				t.reads[key] = kv.ModRev
			}
		}
	}
	return kv, nil
}

func (t *etcdTxn) Get(key string) (KeyValue, error) {
	if t.done {
		return KeyValue{}, errTxDone
	}
	if v, ok := t.writes[key]; ok {
		if v == nil {
			return KeyValue{}, fmt.Errorf("get %q: %w", key, ErrNotFound)
		}
		return KeyValue{Key: key, Value: bytes.Clone(v)}, nil // ModRev 0: known only at commit
	}
	kv, err := t.stored(key)
	if err != nil {
		return KeyValue{}, err
	}
	if kv == nil {
		return KeyValue{}, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return KeyValue{Key: key, Value: bytes.Clone(kv.Value), ModRev: kv.ModRev}, nil
}

// snapshot walks the keys under a prefix at the snapshot's revision, a page at a time. In a
// read-only transaction it asks etcd for the next page while the caller works through the
// current one (a snapshot of 100k records is 100 pages: their round trips overlap the work).
type snapshot struct {
	t     *etcdTxn
	from  string // where the next page starts
	end   string
	page  []*KeyValue
	i     int
	more  bool
	ahead chan pageRead // the next page, asked for already; nil when not
}

// pageRead is one page's answer from etcd.
type pageRead struct {
	resp *clientv3.GetResponse
	err  error
}

// get reads the page that starts at from.
func (it *snapshot) get(from string) pageRead {
	t := it.t
	rctx, cancel := t.s.rpc(t.ctx)
	defer cancel()
	resp, err := t.s.cli.Get(rctx, from, clientv3.WithRange(it.end), clientv3.WithRev(t.rev), clientv3.WithLimit(int64(rangePage)))
	return pageRead{resp, err}
}

// next returns the first key after after (from the start if first), or nil at the end.
func (it *snapshot) next(after string, first bool) (*KeyValue, error) {
	for {
		for !first && it.i < len(it.page) && it.page[it.i].Key <= after {
			it.i++
		}
		if it.i < len(it.page) {
			return it.page[it.i], nil
		}
		if !it.more {
			return nil, nil
		}
		t := it.t
		var pr pageRead
		if it.ahead != nil {
			pr, it.ahead = <-it.ahead, nil
		} else {
			pr = it.get(it.from)
		}
		if pr.err != nil {
			return nil, t.s.fail(t.ctx, fmt.Sprintf("range at revision %d", t.rev), pr.err)
		}
		resp := pr.resp
		it.page, it.i, it.more = it.page[:0], 0, resp.More && len(resp.Kvs) > 0
		if n := len(resp.Kvs); n > 0 {
			it.from = string(resp.Kvs[n-1].Key) + "\x00"
		}
		if it.more && !t.writable {
			it.ahead = make(chan pageRead, 1)
			go func(ch chan<- pageRead, from string) { ch <- it.get(from) }(it.ahead, it.from)
		}
		for _, kv := range resp.Kvs {
			e := &KeyValue{Key: strings.TrimPrefix(string(kv.Key), t.s.data),
				Value: append([]byte{}, kv.Value...), ModRev: kv.ModRevision}
			it.page = append(it.page, e)
			if _, ok := t.cache[e.Key]; !ok && t.writable {
				t.cache[e.Key] = e // for Delete; not a read to compare: the range's compare covers it
			}
		}
	}
}

func (t *etcdTxn) Range(prefix string, fn func(KeyValue) error) error {
	if t.done {
		return errTxDone
	}
	if t.writable {
		t.ranges = append(t.ranges, prefix)
	}
	from := t.s.data + prefix
	snap := &snapshot{t: t, from: from, end: clientv3.GetPrefixRangeEnd(from), more: true}
	if page, ok := t.whole[prefix]; ok {
		snap.page, snap.more = slices.Clone(page), false
	}
	// Walk the snapshot and this transaction's writes together, in key order, finding the next
	// key after the last one afresh each time, since fn may write.
	after, first := "", true
	for {
		next, err := snap.next(after, first)
		for err == nil && next != nil {
			if v, ok := t.writes[next.Key]; !ok || v != nil {
				break
			}
			next, err = snap.next(next.Key, false) // deleted by this transaction
		}
		if err != nil {
			return err
		}
		j := sort.SearchStrings(t.wkeys, prefix)
		if !first {
			j = sort.Search(len(t.wkeys), func(j int) bool { return t.wkeys[j] > after })
		}
		for ; j < len(t.wkeys) && strings.HasPrefix(t.wkeys[j], prefix); j++ {
			if t.writes[t.wkeys[j]] != nil {
				if next == nil || t.wkeys[j] < next.Key {
					next = &KeyValue{Key: t.wkeys[j]}
				}
				break
			}
		}
		if next == nil {
			return nil
		}
		kv := KeyValue{Key: next.Key, Value: bytes.Clone(next.Value), ModRev: next.ModRev}
		if v, ok := t.writes[next.Key]; ok {
			kv.Value, kv.ModRev = bytes.Clone(v), 0
		}
		after, first = next.Key, false
		if err := fn(kv); err != nil {
			return err
		}
	}
}

// prefetchOps is how many reads prefetch sends in one etcd request (etcd's --max-txn-ops is
// 128 by default).
const prefetchOps = 64

// prefetch implements Prefetch: the keys not read yet and the prefixes go to etcd as read-only
// transactions of prefetchOps reads at the snapshot's revision. A prefix whose keys do not fit in
// one page of Range is left to Range.
func (t *etcdTxn) prefetch(keys, prefixes []string) error {
	if t.done {
		return errTxDone
	}
	type read struct {
		key    string
		prefix bool
	}
	var reads []read
	for _, k := range keys {
		if _, ok := t.cache[k]; !ok {
			reads = append(reads, read{k, false})
		}
	}
	for _, p := range prefixes {
		if _, ok := t.whole[p]; !ok {
			reads = append(reads, read{p, true})
		}
	}
	for len(reads) > 0 {
		batch := reads[:min(len(reads), prefetchOps)]
		reads = reads[len(batch):]
		ops := make([]clientv3.Op, len(batch))
		for i, r := range batch {
			if r.prefix {
				from := t.s.data + r.key
				ops[i] = clientv3.OpGet(from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(from)),
					clientv3.WithRev(t.rev), clientv3.WithLimit(int64(rangePage)))
			} else {
				ops[i] = clientv3.OpGet(t.s.data+r.key, clientv3.WithRev(t.rev))
			}
		}
		rctx, cancel := t.s.rpc(t.ctx)
		resp, err := t.s.cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return t.s.fail(t.ctx, fmt.Sprintf("prefetch %d reads at revision %d", len(batch), t.rev), err)
		}
		for i, r := range batch {
			rr := resp.Responses[i].GetResponseRange()
			if rr == nil {
				return fmt.Errorf("kv: prefetch: etcd answered a read with %T", resp.Responses[i].Response)
			}
			var kvs []*KeyValue
			for _, kv := range rr.Kvs {
				kvs = append(kvs, &KeyValue{Key: strings.TrimPrefix(string(kv.Key), t.s.data),
					Value: append([]byte{}, kv.Value...), ModRev: kv.ModRevision})
			}
			switch {
			case !r.prefix && len(kvs) == 1:
				t.cache[r.key] = kvs[0]
			case !r.prefix:
				t.cache[r.key] = nil
			case !rr.More:
				if t.whole == nil {
					t.whole = map[string][]*KeyValue{}
				}
				t.whole[r.key] = kvs
				for _, e := range kvs {
					if _, ok := t.cache[e.Key]; !ok && t.writable {
						t.cache[e.Key] = e // for Delete, as Range's pages: not a read to compare
					}
				}
			}
		}
	}
	return nil
}

func (t *etcdTxn) Put(key string, value []byte) error {
	if err := t.writeCheck(key); err != nil {
		return err
	}
	if len(value) > MaxValueLen {
		return fmt.Errorf("put %q: value of %d bytes, want at most %d: %w", key, len(value), MaxValueLen, ErrInvalid)
	}
	t.write(key, append([]byte{}, value...))
	return nil
}

func (t *etcdTxn) Delete(key string) error {
	if err := t.writeCheck(key); err != nil {
		return err
	}
	kv, err := t.stored(key) // the commit deletes in etcd only what was there
	if err != nil {
		return err
	}
	v, written := t.writes[key]
	if (written && v == nil) || (!written && kv == nil) {
		return fmt.Errorf("delete %q: %w", key, ErrNotFound)
	}
	t.write(key, nil)
	return nil
}

func (t *etcdTxn) write(key string, v []byte) {
	if _, ok := t.writes[key]; !ok {
		i, _ := slices.BinarySearch(t.wkeys, key)
		t.wkeys = slices.Insert(t.wkeys, i, key)
	}
	t.writes[key] = v
}

func (t *etcdTxn) writeCheck(key string) error {
	switch {
	case t.done:
		return errTxDone
	case !t.writable:
		return ErrReadOnly
	}
	return checkKey(key)
}

// commitPlan returns the compares and the operations of the commit (none if nothing changed).
// Operations are in key order, which is the order of the revision's events.
func (t *etcdTxn) commitPlan() ([]clientv3.Cmp, []clientv3.Op, error) {
	var ops []clientv3.Op
	deletes := false
	for _, k := range t.wkeys {
		switch v := t.writes[k]; {
		case v != nil:
			ops = append(ops, clientv3.OpPut(t.s.data+k, string(v)))
		case t.cache[k] != nil:
			ops = append(ops, clientv3.OpDelete(t.s.data+k))
			deletes = true
		}
	}
	if len(ops) == 0 {
		return nil, nil, nil
	}
	var cmps []clientv3.Cmp
	keys := make([]string, 0, len(t.reads))
	for k := range t.reads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.data+k), "=", t.reads[k]))
	}
	if len(t.ranges) > 0 {
		slices.Sort(t.ranges)
		for _, p := range slices.Compact(t.ranges) {
			// No key under the prefix changed or appeared since the snapshot...
			k := t.s.data + p
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", t.rev+1).WithRange(clientv3.GetPrefixRangeEnd(k)))
		}
		// ...and none disappeared: every Update that deletes also writes the guard key.
		rctx, cancel := t.s.rpc(t.ctx)
		defer cancel()
		resp, err := t.s.cli.Get(rctx, t.s.guard, clientv3.WithRev(t.rev))
		if err != nil {
			return nil, nil, t.s.fail(t.ctx, "kv: update: read guard", err)
		}
		var g int64
		if len(resp.Kvs) == 1 {
			g = resp.Kvs[0].ModRevision
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.guard), "=", g))
	}
	if deletes {
		ops = append(ops, clientv3.OpPut(t.s.guard, ""))
	}
	return cmps, ops, nil
}
