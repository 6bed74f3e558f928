package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// Options configure a Syncer. Zero durations and nil functions take the defaults named.
type Options struct {
	Sync  config.Sync   // registry, ca_file, credential_file or client_cert/client_key
	Store store.Options // the node's store directory and lock timeout
	// BookmarkInterval is the registry's (10 s) when its watch answer does not announce it: a
	// stream that sends nothing for three of them is stalled, dropped, and the node moves on to
	// the next replica.
	BookmarkInterval time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (0.5 s, 30 s); it carries ±20 % jitter.
	MinBackoff, MaxBackoff time.Duration
	// TouchEvery is how often a bookmark's last contact is written to tokens.db (5 s).
	TouchEvery time.Duration
	// RequestTimeout bounds waiting for response headers (15 s) and each ack and used report
	// (a fifth of it, at least 1 s).
	RequestTimeout time.Duration
	Now            func() time.Time // clock.Now
	Rand           func() float64   // math/rand/v2 Float64: the jitter
	Log            *slog.Logger     // slog.Default()
	Metrics        *Metrics         // NewMetrics(Now, Version)
	Version        string           // sent as User-Agent and in acks

	// UsedEvery is how often state.db's used backup codes are checked while connected (0.5 s;
	// at most 2 s), besides after each batch and bookmark.
	UsedEvery time.Duration
}

func (o *Options) defaults() {
	if o.BookmarkInterval <= 0 {
		o.BookmarkInterval = 10 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.TouchEvery <= 0 {
		o.TouchEvery = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.UsedEvery <= 0 || o.UsedEvery > usedForceEvery {
		o.UsedEvery = usedEvery
	}
	if o.Now == nil {
		o.Now = clock.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(o.Now, o.Version)
	}
}

// Syncer keeps tokens.db in step with the registry. Run it once.
type Syncer struct {
	o       Options
	tokens  *store.Tokens
	client  *client
	backoff Backoff
	log     *slog.Logger
	m       *Metrics

	resync     string    // a pending resync's reason; "" none
	lastTouch  time.Time // last write of last contact to tokens.db
	acks       chan registryapi.Ack
	usedKick   chan struct{} // a used-code round is due
	outboxKick chan struct{} // an outbox round is due (claims.go)
	kick       chan struct{} // Kick: end a back-off wait now (kick.go)
}

// resyncError asks the loop for a full resync.
type resyncError struct {
	reason string
	err    error
}

func (e *resyncError) Error() string { return fmt.Sprintf("resync (%s): %v", e.reason, e.err) }
func (e *resyncError) Unwrap() error { return e.err }

// New checks the options (CA, credential, registry URL) and returns a Syncer.
func New(o Options) (*Syncer, error) {
	o.defaults()
	c, err := newClient(o.Sync, o.RequestTimeout, "totp-syncd/"+o.Version, o.Now)
	if err != nil {
		return nil, err
	}
	s := &Syncer{
		o:      o,
		tokens: store.NewTokens(o.Store),
		client: c,
		log:    o.Log,
		m:      o.Metrics,
		acks:   make(chan registryapi.Ack, 1),

		usedKick:   make(chan struct{}, 1),
		outboxKick: make(chan struct{}, 1),
		kick:       make(chan struct{}),
	}
	s.backoff = Backoff{Min: o.MinBackoff, Max: o.MaxBackoff, Jitter: 0.2, Rand: o.Rand}
	for _, b := range c.bases {
		if b.Scheme == "http" {
			s.log.Warn("registry over plain HTTP: the node credential and the tokens cross the network unencrypted; use https outside tests",
				"registry", b.String())
		}
	}
	c.onMove = func(from, to string, since time.Time) {
		s.m.failover()
		s.m.setReplica(to, since)
		s.log.Warn("moving to another registry replica", "from", from, "to", to)
	}
	_, u, since := c.current()
	s.m.setReplica(u, since)
	return s, nil
}

// Metrics returns the syncer's metrics.
func (s *Syncer) Metrics() *Metrics { return s.m }

// Run syncs until ctx ends. It returns nil then, or an error that retrying cannot fix (the store
// directory is unusable, another totp-syncd holds the store).
func (s *Syncer) Run(ctx context.Context) error {
	defer s.client.close()
	release, err := s.tokens.LockWriter()
	if err != nil {
		return err
	}
	defer release()
	if n, err := s.tokens.RemoveStaging(); err != nil {
		return err
	} else if n > 0 {
		s.log.Info("removed the staging files of an unfinished resync", "files", n)
	}
	if m, err := s.tokens.Meta(); err == nil {
		s.m.setStore(int64(m.Revision), m.Count, m.LastContact)
	}
	ackCtx, stopAcks := context.WithCancel(ctx)
	defer stopAcks()
	go s.ackLoop(ackCtx)
	usedDone, outboxDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(usedDone)
		s.usedLoop(ackCtx)
	}()
	go func() {
		defer close(outboxDone)
		s.outboxLoop(ackCtx)
	}()
	defer func() { stopAcks(); <-usedDone; <-outboxDone }() // no state.db or tokens.db read outlives Run

	prevResync := false
	failed := 0 // replicas that failed in a row without progress
	for {
		replica, _, _ := s.client.current()
		progress, err := s.cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progress {
			s.backoff.Reset()
			failed = 0
		}
		var rs *resyncError
		isResync := errors.As(err, &rs)
		if isResync {
			if s.resync == "" {
				s.m.resync(rs.reason)
			}
			s.resync = rs.reason
			s.log.Warn("resyncing from a snapshot", "reason", rs.reason, "err", rs.err)
		}
		switch {
		case err == nil:
			s.log.Debug("watch stream ended; reconnecting")
			prevResync = false
			continue
		case isResync && (progress || !prevResync):
			prevResync = true
			continue
		}
		prevResync = isResync
		if !isResync && !errors.Is(err, ErrRefused) && !store.IsLockTimeout(err) && len(s.client.bases) > 1 {
			// The replica failed (no connection, 503, a stalled or broken stream): try the next
			// one now, and wait only once every replica failed in a row.
			s.client.moveFrom(replica)
			if failed++; failed < len(s.client.bases) {
				s.log.Warn("sync interrupted; trying the next replica", "err", err)
				continue
			}
			failed = 0
		}
		wait := s.backoff.Next()
		if !isResync {
			s.log.Warn("sync interrupted; tokens.db keeps serving logins", "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.kick:
			t.Stop()
			s.log.Info("reconnecting now: asked over D-Bus")
		case <-t.C:
		}
	}
}

// cycle resyncs when needed, then follows one watch stream. progress says whether the stream
// delivered anything that was applied or checked.
func (s *Syncer) cycle(ctx context.Context) (progress bool, err error) {
	m, err := s.tokens.Meta()
	reason := s.resync
	switch {
	case errors.Is(err, store.ErrNoStore):
		reason = ReasonNoStore
	case errors.Is(err, store.ErrSchema):
		reason = ReasonSchema
	case store.IsLockTimeout(err):
		return false, err
	case err != nil:
		reason = ReasonStoreCheck
	case m.Revision == 0:
		reason = ReasonNoRevision
	case m.Epoch == "" && !slices.Contains(s.o.Sync.Registry, m.Source):
		// Written before epochs, by a registry not in the list: its revisions mean nothing here.
		reason = ReasonSource
	}
	if reason != "" {
		if s.resync == "" {
			s.m.resync(reason)
			s.log.Info("full resync needed", "reason", reason, "store", err)
		}
		s.resync = reason
		if m, err = s.snapshot(ctx); err != nil {
			return false, err
		}
		s.resync = ""
	}
	return s.watch(ctx, m)
}

// stream opens a GET stream on the followed replica whose body is dropped when it stalls: no
// data for three bookmark intervals (the one the registry announces, else BookmarkInterval).
// origin is the replica and the store epoch its answer announced.
func (s *Syncer) stream(ctx context.Context, path string, q url.Values) (*http.Response, io.ReadCloser, store.Origin, context.CancelFunc, error) {
	rctx, cancel := context.WithCancel(ctx)
	i, u, _ := s.client.current()
	resp, err := s.client.doAt(rctx, i, http.MethodGet, path, q, nil)
	if err != nil {
		cancel()
		return nil, nil, store.Origin{}, nil, err
	}
	interval := s.o.BookmarkInterval
	if d, err := time.ParseDuration(resp.Header.Get(syncframe.BookmarkIntervalHeader)); err == nil && d >= time.Second && d <= 5*time.Minute {
		interval = d
	}
	o := store.Origin{Source: u, Epoch: resp.Header.Get(syncframe.EpochHeader)}
	return resp, newIdleBody(resp.Body, 3*interval, cancel), o, cancel, nil
}

// snapshot fetches the node's whole set into a staging file and switches tokens.db to it.
func (s *Syncer) snapshot(ctx context.Context) (store.Meta, error) {
	start := time.Now()
	resp, body, origin, cancel, err := s.stream(ctx, "/v1/sync/snapshot", nil)
	if err != nil {
		return store.Meta{}, fmt.Errorf("snapshot: %w", err)
	}
	defer cancel()
	defer body.Close()
	if resp.StatusCode != http.StatusOK {
		return store.Meta{}, statusError("GET", "/v1/sync/snapshot", resp)
	}
	st, err := s.tokens.NewStaging()
	if err != nil {
		return store.Meta{}, err
	}
	rev, d, err := syncframe.Snapshot(syncframe.NewReader(body), func(f syncframe.Frame) error {
		return st.Put(f.Key, f.Value)
	})
	if err != nil {
		st.Abort()
		return store.Meta{}, fmt.Errorf("snapshot (nothing switched): %w", err)
	}
	s.m.seenRevision(rev)
	m, err := st.Finish(rev, d.Count(), d.String(), origin, s.o.Now())
	if err != nil {
		return store.Meta{}, err
	}
	s.lastTouch = s.o.Now()
	s.m.setStore(int64(m.Revision), m.Count, m.LastContact)
	s.log.Info("tokens.db switched to a snapshot", "revision", m.Revision, "records", m.Count,
		"digest", m.Digest, "registry", origin.Source, "epoch", origin.Epoch, "took", time.Since(start).Round(time.Millisecond))
	s.queueAck(m, 0)
	return m, nil
}

// watch follows one watch stream from meta's revision, applying batches and checking bookmarks.
func (s *Syncer) watch(ctx context.Context, m store.Meta) (progress bool, err error) {
	since := int64(m.Revision)
	q := url.Values{"since": {strconv.FormatInt(since, 10)}}
	resp, body, origin, cancel, err := s.stream(ctx, "/v1/sync/watch", q)
	if err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	defer cancel()
	defer body.Close()
	// Only the answers of the sync protocol carry the epoch (a 401 or a 503 may come before it).
	if ok := resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusGone; ok && origin.Epoch != m.Epoch {
		return false, &resyncError{reason: ReasonEpoch, err: fmt.Errorf("%s serves store epoch %q; tokens.db holds revision %d of epoch %q",
			origin.Source, origin.Epoch, since, m.Epoch)}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		return false, &resyncError{reason: ReasonCompacted, err: fmt.Errorf("watch since %d: 410 Gone", since)}
	default:
		return false, statusError("GET", "/v1/sync/watch", resp)
	}
	s.m.setConnected(true)
	defer s.m.setConnected(false)
	s.log.Debug("watching", "since", since)
	w := syncframe.NewWatch(syncframe.NewReader(body), since)
	for {
		batch, bm, err := w.Next()
		switch {
		case err == io.EOF:
			if !progress {
				return false, errors.New("watch stream ended before any frame")
			}
			return true, nil
		case err != nil:
			if strings.Contains(err.Error(), "registry: "+ReasonCompacted+":") {
				return progress, &resyncError{reason: ReasonCompacted, err: err}
			}
			return progress, fmt.Errorf("watch stream from revision %d (nothing partial applied): %w", since, err)
		case batch != nil:
			if err := s.apply(batch, origin); err != nil {
				return progress, err
			}
		default:
			if err := s.bookmark(bm, origin); err != nil {
				return progress, err
			}
		}
		progress = true
	}
}

// apply writes one complete batch.
func (s *Syncer) apply(b *syncframe.Batch, origin store.Origin) error {
	s.m.seenRevision(b.Rev)
	changes := make([]store.Change, len(b.Frames))
	for i, f := range b.Frames {
		changes[i] = store.Change{Key: f.Key}
		if f.Type == syncframe.Put {
			changes[i].Value = f.Value
		}
	}
	start := time.Now()
	m, applied, err := s.tokens.Apply(b.Rev, changes, origin, s.o.Now())
	took := time.Since(start)
	switch {
	case errors.Is(err, store.ErrStoreCheck), errors.Is(err, store.ErrSchema), errors.Is(err, store.ErrNoStore):
		return &resyncError{reason: ReasonStoreCheck, err: err}
	case err != nil:
		return fmt.Errorf("apply revision %d (not applied): %w", b.Rev, err)
	}
	s.m.observeApply(took)
	if applied {
		s.lastTouch = s.o.Now()
		s.m.setStore(int64(m.Revision), m.Count, m.LastContact)
		s.log.Debug("applied", "revision", b.Rev, "changes", len(changes), "records", m.Count, "took", took)
		s.queueAck(m, took)
	}
	s.kickUsed()
	return nil
}

// bookmark checks the registry's count and digest against tokens.db's meta and refreshes the
// last contact when it is due.
func (s *Syncer) bookmark(bm *syncframe.Frame, origin store.Origin) error {
	if bm.Epoch != origin.Epoch {
		return &resyncError{reason: ReasonEpoch, err: fmt.Errorf("bookmark at %d of store epoch %q in a stream of epoch %q",
			bm.Rev, bm.Epoch, origin.Epoch)}
	}
	s.m.seenRevision(bm.Rev)
	m, err := s.tokens.Meta()
	if err != nil {
		if store.IsLockTimeout(err) {
			return err
		}
		return &resyncError{reason: ReasonStoreCheck, err: err}
	}
	if m.Count != bm.Count || !strings.EqualFold(m.Digest, bm.Digest) {
		return &resyncError{reason: ReasonDigestMismatch, err: fmt.Errorf(
			"bookmark at %d says %d records, digest %s; tokens.db at %d has %d, %s",
			bm.Rev, bm.Count, bm.Digest, m.Revision, m.Count, m.Digest)}
	}
	now := s.o.Now()
	if now.Sub(s.lastTouch) >= s.o.TouchEvery || now.Before(s.lastTouch) {
		if m, err = s.tokens.Touch(bm.Rev, origin.Source, now); err != nil {
			if store.IsLockTimeout(err) {
				return err
			}
			return &resyncError{reason: ReasonStoreCheck, err: err}
		}
		s.lastTouch = now
	}
	if m, err = s.keepAnchor(bm, m); err != nil {
		return err
	}
	s.m.setStore(int64(m.Revision), m.Count, m.LastContact)
	m.Revision = max(m.Revision, uint64(bm.Rev))
	s.queueAck(m, 0)
	s.kickUsed()
	return nil
}

// queueAck hands the newest state to the ack loop, replacing one not yet sent.
func (s *Syncer) queueAck(m store.Meta, lag time.Duration) {
	a := registryapi.Ack{Rev: int64(m.Revision), Count: m.Count, Digest: m.Digest, LagMS: lag.Milliseconds(), Version: s.o.Version,
		Audit: m.Audit}
	for {
		select {
		case s.acks <- a:
			return
		default:
		}
		select {
		case <-s.acks:
		default:
		}
	}
}

// ackLoop posts acks one at a time, best effort, each with a short deadline.
func (s *Syncer) ackLoop(ctx context.Context) {
	timeout := max(s.o.RequestTimeout/5, time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-s.acks:
			body, _ := json.Marshal(a)
			actx, cancel := context.WithTimeout(ctx, timeout)
			resp, err := s.client.do(actx, http.MethodPost, "/v1/sync/ack", nil, body)
			if err == nil {
				if resp.StatusCode/100 != 2 {
					err = statusError("POST", "/v1/sync/ack", resp)
				}
				io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Debug("ack failed (best effort)", "rev", a.Rev, "err", err)
			}
		}
	}
}
