package registry

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/version"
)

func versionString() string { return version.Version }

// Stream tuning.
const (
	batchChanges    = 1000             // changes read per step of a stream
	writeTimeout    = 30 * time.Second // a node must take a flushed batch within this
	snapshotTimeout = 5 * time.Minute  // a whole snapshot must be taken within this
	snapshotWait    = 30 * time.Second // wait for a snapshot slot at most this long
	pollDefault     = 30 * time.Second
	pollMax         = 60 * time.Second
)

// snapshotCountWait bounds how long a snapshot waits for the index to reach its revision.
const snapshotCountWait = 5 * time.Second

// handleSnapshot answers GET /v1/sync/snapshot: the scope's records at one revision, streamed
// from one read of the store as they are read, so a snapshot of 100k tokens costs the registry a
// page of records, not a copy of the set. The begin frame's count comes from the index at that
// revision (a counting pass over the records when the index cannot say). A node that reads
// slowly keeps the read open up to snapshotTimeout: on bbolt that delays the reuse of the pages
// freed meanwhile (the mmap is sized so that it never blocks writers), on etcd the reads are of
// a pinned revision, and a compaction past it ends the snapshot (the node retries).
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	n, ok := s.authNode(w, r)
	if !ok {
		return
	}
	scope, ok := scopeOf(w, r, n)
	if !ok {
		return
	}
	w.Header().Set(syncframe.EpochHeader, s.epoch)
	wait, cancel := context.WithTimeout(r.Context(), snapshotWait)
	defer cancel()
	select {
	case s.snapSem <- struct{}{}:
		defer func() { <-s.snapSem }()
	case <-wait.Done():
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many snapshots at once; retry")
		return
	}
	start := time.Now()
	var (
		rev     int64
		d       syncframe.Digest
		started bool  // the status line is out: failures from here on truncate the stream
		werr    error // the node's connection failed
	)
	// each calls fn with every record of the scope (key without prefixRec, sealed wrapper).
	each := func(tx kv.Txn, fn func(key string, wr sealedRecord) error) error {
		return tx.Range(prefixRec, func(kvp kv.KeyValue) error {
			key := recKey(kvp.Key)
			wr, err := s.unwrap(key, kvp.Value)
			if errors.Is(err, errBadRecord) {
				return nil // refused and logged: served to no node
			}
			if err != nil {
				return err
			}
			if !visible(wr.Scopes, scope) {
				return nil
			}
			return fn(key, wr)
		})
	}
	err := s.store.View(r.Context(), func(rv int64, tx kv.Txn) error {
		rev = rv
		count, err := s.snapshotCount(r.Context(), scope, rev)
		if err != nil {
			s.log.Debug("snapshot: the index cannot count the scope at the revision; counting", "revision", rev, "err", err)
			count = 0
			if err := each(tx, func(string, sealedRecord) error { count++; return nil }); err != nil {
				return err
			}
		}
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(snapshotTimeout))
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
		bw := bufio.NewWriterSize(w, 64<<10)
		fw := syncframe.NewWriter(bw)
		if werr = fw.Write(syncframe.Frame{Type: syncframe.Begin, Rev: rev, Count: count, Epoch: s.epoch}); werr != nil {
			return werr
		}
		err = each(tx, func(key string, wr sealedRecord) error {
			value, err := s.sealer.Open(wr.Sealed, []byte(key))
			if err != nil {
				return fmt.Errorf("open record %s: %w", key, err)
			}
			d.Add(key, value)
			werr = fw.Write(syncframe.Frame{Type: syncframe.Put, Rev: rev, Key: key, Value: value})
			return werr
		})
		if err != nil {
			return err
		}
		if d.Count() != count {
			// The node refuses a snapshot whose records do not match its begin frame.
			s.log.Error("snapshot: the index counted another number of records than were read; the node will retry",
				"scope", scope, "revision", rev, "counted", count, "read", d.Count())
		}
		if werr = fw.Write(syncframe.Frame{Type: syncframe.End, Rev: rev, Count: d.Count(), Digest: d.String(), Epoch: s.epoch}); werr != nil {
			return werr
		}
		werr = bw.Flush()
		return werr
	})
	switch {
	case err == nil:
		s.log.Info("snapshot", "node", n.Name, "scope", scope, "revision", rev, "count", d.Count(),
			"took", time.Since(start).Round(time.Millisecond))
	case werr != nil:
		s.log.Warn("snapshot not delivered", "node", n.Name, "revision", rev, "err", werr)
	case !started:
		s.storeFailed(w, "snapshot read", err, "node", n.Name)
	default:
		// The node sees a truncated snapshot and retries; nothing it has is replaced.
		s.log.Error("snapshot cut short: cannot read the store", "node", n.Name, "revision", rev, "err", err)
	}
}

// snapshotCount is the number of records of scope at revision rev, from the index: it waits a
// moment for the index to reach rev, then takes back the logged changes after rev.
func (s *Server) snapshotCount(ctx context.Context, scope string, rev int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotCountWait)
	defer cancel()
	for {
		count, at, notify := s.idx.countAt(scope, rev)
		switch {
		case at == countOK:
			return count, nil
		case at == countTooOld:
			return 0, fmt.Errorf("revision %d is older than the index's log", rev)
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return 0, fmt.Errorf("the index has not reached revision %d: %w", rev, ctx.Err())
		}
	}
}

// handleWatch answers GET /v1/sync/watch?since=R[&mode=poll&timeout=D].
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	n, ok := s.authNode(w, r)
	if !ok {
		return
	}
	scope, ok := scopeOf(w, r, n)
	if !ok {
		return
	}
	w.Header().Set(syncframe.EpochHeader, s.epoch)
	w.Header().Set(syncframe.BookmarkIntervalHeader, s.cfg.BookmarkInterval.String())
	q := r.URL.Query()
	since, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if err != nil || since < 0 {
		writeError(w, http.StatusBadRequest, "since: want a revision (a number >= 0)")
		return
	}
	poll := q.Get("mode") == "poll"
	if m := q.Get("mode"); m != "" && m != "poll" && m != "stream" {
		writeError(w, http.StatusBadRequest, "mode: want poll or stream")
		return
	}
	life := jitter(s.cfg.StreamMax)
	if poll {
		life = pollDefault
		if t := q.Get("timeout"); t != "" {
			life, err = time.ParseDuration(t)
			if err != nil || life < 0 {
				writeError(w, http.StatusBadRequest, "timeout: want a duration such as 30s")
				return
			}
			life = min(life, pollMax)
		}
	}
	if since < s.store.CompactedRev() || since > s.store.Rev() {
		writeError(w, http.StatusGone, fmt.Sprintf("revision %d is not in the history (compacted %d, current %d); take a snapshot",
			since, s.store.CompactedRev(), s.store.Rev()))
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	st := &stream{cancel: cancel}
	if !s.registerStream(n.Name, st) {
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer s.unregisterStream(n.Name, st)

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ws := &watchStream{s: s, ctx: ctx, rc: http.NewResponseController(w), scope: scope, pos: since}
	ws.bw = bufio.NewWriterSize(w, 32<<10)
	ws.fw = syncframe.NewWriter(ws.bw)
	err = ws.run(poll, life)
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), errNodeRemoved):
		ws.final("node_removed", "this node was removed from the registry")
	case errors.Is(context.Cause(ctx), errShuttingDown):
		ws.final("shutting_down", "the registry is shutting down; reconnect")
	case errors.Is(err, kv.ErrCompacted):
		ws.final("compacted", "the history this stream needs was compacted; take a snapshot")
	case r.Context().Err() != nil:
		// The node went away.
	default:
		s.log.Warn("watch stream ended", "node", n.Name, "position", ws.pos, "err", err)
	}
}

// jitter returns d ± 20 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// watchStream is one node's watch: its position and writer.
type watchStream struct {
	s     *Server
	ctx   context.Context
	rc    *http.ResponseController
	bw    *bufio.Writer
	fw    *syncframe.Writer
	scope string
	pos   int64
}

// run streams until life ends (nil), the node goes, or the stream is cancelled.
func (ws *watchStream) run(poll bool, life time.Duration) error {
	deadline := time.NewTimer(life)
	defer deadline.Stop()
	interval := ws.s.cfg.BookmarkInterval
	var lastMark time.Time
	due := !poll // a stream bookmarks as soon as it has caught up; a poll only after news or timeout
	sent, expired := false, false
	for {
		rev, count, digest, notify := ws.s.idx.view(ws.scope)
		if ws.pos < rev {
			n, err := ws.step()
			if err != nil {
				return err
			}
			if n > 0 {
				due, sent = true, true
			}
			continue
		}
		if ws.pos == rev && (due || expired || (!poll && time.Since(lastMark) >= interval)) {
			if err := ws.write(syncframe.Frame{Type: syncframe.Bookmark, Rev: rev, Count: count, Digest: digest, Audit: ws.s.idx.anchor(), Epoch: ws.s.epoch}); err != nil {
				return err
			}
			if err := ws.flush(); err != nil {
				return err
			}
			lastMark, due = time.Now(), false
			if poll && (sent || expired) {
				return nil
			}
		}
		if expired {
			return nil
		}
		wait := time.NewTimer(max(time.Millisecond, interval-time.Since(lastMark)))
		select {
		case <-notify:
		case <-wait.C:
		case <-deadline.C:
			// A stream ends cleanly between batches; a poll answers with a bookmark first.
			if !poll {
				wait.Stop()
				return nil
			}
			expired = true
		case <-ws.ctx.Done():
			wait.Stop()
			return context.Cause(ws.ctx)
		}
		wait.Stop()
	}
}

// step sends the next changes after the stream's position and advances it. It returns the
// number of frames sent.
func (ws *watchStream) step() (int, error) {
	if err := ws.ctx.Err(); err != nil {
		return 0, context.Cause(ws.ctx)
	}
	cs, upto, ok := ws.s.idx.changesAfter(ws.pos, batchChanges)
	if !ok {
		var err error
		cs, upto, err = ws.s.changesFromStore(ws.ctx, ws.pos, batchChanges, ws.s.idx.revision())
		if err != nil {
			return 0, err
		}
	}
	n, err := writeBatches(ws.fw, cs, ws.scope)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		if err := ws.flush(); err != nil {
			return 0, err
		}
	}
	ws.pos = max(ws.pos, upto)
	return n, nil
}

func (ws *watchStream) write(f syncframe.Frame) error { return ws.fw.Write(f) }

func (ws *watchStream) flush() error {
	_ = ws.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := ws.bw.Flush(); err != nil {
		return err
	}
	return ws.rc.Flush()
}

// final writes an error frame and flushes, ignoring a failure (the stream ends anyway).
func (ws *watchStream) final(code, msg string) {
	_ = ws.write(syncframe.Frame{Type: syncframe.Error, Code: code, Message: msg})
	_ = ws.flush()
}

// writeBatches writes the visible frames of the changes, each revision closed by a commit; it
// returns the number of put and delete frames.
func writeBatches(fw *syncframe.Writer, cs []change, scope string) (int, error) {
	total, inRev := 0, int64(0)
	for i := range cs {
		if f, ok := cs[i].frame(scope); ok {
			if err := fw.Write(f); err != nil {
				return total, err
			}
			inRev++
			total++
		}
		if inRev > 0 && (i == len(cs)-1 || cs[i+1].rev != cs[i].rev) {
			if err := fw.Write(syncframe.Frame{Type: syncframe.Commit, Rev: cs[i].rev, Count: inRev}); err != nil {
				return total, err
			}
			inRev = 0
		}
	}
	return total, nil
}

// changesFromStore reads changes after pos from the store's history, for a stream behind the
// in-memory log, up to (and including) revision upTo at most.
func (s *Server) changesFromStore(ctx context.Context, pos int64, limit int, upTo int64) ([]change, int64, error) {
	evs, err := s.store.Events(ctx, prefixRec, pos, limit)
	if err != nil {
		return nil, 0, err
	}
	reached := upTo
	if len(evs) >= limit && evs[len(evs)-1].Rev < upTo {
		reached = evs[len(evs)-1].Rev
	}
	cs := make([]change, 0, len(evs))
	for _, ev := range evs {
		if ev.Rev > reached {
			break
		}
		c, err := s.decodeEvent(ev)
		if err != nil {
			return nil, 0, err
		}
		cs = append(cs, c)
	}
	return cs, reached, nil
}

// ack is a node's last acknowledgement, kept in memory.
type ack struct {
	registryapi.Ack
	At       time.Time `json:"-"`
	DigestOK *bool     `json:"-"`
}

// handleAck answers POST /v1/sync/ack.
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	n, ok := s.authNode(w, r)
	if !ok {
		return
	}
	if _, ok := scopeOf(w, r, n); !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "body too large or unreadable")
		return
	}
	a, err := parseAck(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.At = s.now()
	if rev, count, digest, _ := s.idx.view(n.Scope); rev == a.Rev {
		agree := count == a.Count && digest == strings.ToLower(a.Digest)
		a.DigestOK = &agree
	} else {
		s.mu.Lock()
		if prev, ok := s.acks[n.Name]; ok && prev.Rev == a.Rev {
			a.DigestOK = prev.DigestOK
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.acks[n.Name] = a
	s.noteAck(n.Name, a.Rev)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// parseAck decodes and checks an ack body.
func parseAck(body []byte) (ack, error) {
	var a ack
	if err := decodeStrict(body, &a); err != nil {
		return a, err
	}
	if a.Rev < 0 || a.Count < 0 || a.LagMS < 0 || len(a.Version) > 64 || (a.Digest != "" && len(a.Digest) != 64) {
		return a, badRequest("ack: rev, count and lag_ms must be >= 0, digest 64 hex digits, version at most 64 bytes")
	}
	if a.Audit != nil {
		if err := a.Audit.Validate(); err != nil {
			return a, badRequest("ack: %v", err)
		}
	}
	a.Version = clip(cleanReason(a.Version))
	return a, nil
}

// decodeStrict decodes one JSON object, refusing unknown fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %s", clip(err.Error()))
	}
	if dec.More() {
		return badRequest("invalid JSON body: data after the object")
	}
	return nil
}

// nodePost authenticates a node's POST and reads its body, at most limit bytes; it returns the
// node, its scope and the body, or false when it has answered the request already.
func (s *Server) nodePost(w http.ResponseWriter, r *http.Request, limit int64) (nodeRecord, string, []byte, bool) {
	n, ok := s.authNode(w, r)
	if !ok {
		return n, "", nil, false
	}
	scope, ok := scopeOf(w, r, n)
	if !ok {
		return n, "", nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "body unreadable")
		}
		return n, "", nil, false
	}
	return n, scope, body, true
}

// Used-code reports (POST /v1/sync/used).
const (
	maxUsedBody    = 512 << 10 // 1000 entries of the longest keys fit
	maxUsedEntries = 1000
)

// parseUsed decodes and checks a used report: 1 to maxUsedEntries entries, each a backup record
// key ("b/USER/ID") with the time of use. Repeated keys count once (the first).
func parseUsed(body []byte) ([]registryapi.UsedMark, error) {
	var q registryapi.UsedReport
	if err := decodeStrict(body, &q); err != nil {
		return nil, err
	}
	if len(q.Used) == 0 || len(q.Used) > maxUsedEntries {
		return nil, badRequest("used: want 1 to %d entries", maxUsedEntries)
	}
	seen := make(map[string]bool, len(q.Used))
	out := make([]registryapi.UsedMark, 0, len(q.Used))
	for _, u := range q.Used {
		kind, _, _, err := syncframe.ParseKey(u.Key)
		if err != nil || kind != syncframe.KindBackup {
			return nil, badRequest("used: key %q is not a backup code record (b/USER/ID)", clip(u.Key))
		}
		if u.At.IsZero() {
			return nil, badRequest("used: key %q has no time of use (at)", clip(u.Key))
		}
		if !seen[u.Key] {
			seen[u.Key] = true
			out = append(out, u)
		}
	}
	return out, nil
}

// handleUsed answers POST /v1/sync/used: a node reports backup codes and passcodes that logins
// accepted, and each one still there is deleted, so the delete reaches every node. All of a
// report is one revision, with one audit record per code; records already gone are ignored, and
// a key outside the node's scope refuses the whole report.
func (s *Server) handleUsed(w http.ResponseWriter, r *http.Request) {
	n, scope, body, ok := s.nodePost(w, r, maxUsedBody)
	if !ok {
		return
	}
	entries, err := parseUsed(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.now()
	var deleted []string
	rev, err := s.store.Update(r.Context(), func(t kv.Txn) error {
		deleted = deleted[:0]
		x := &txn{Txn: t, s: s}
		for _, u := range entries {
			kvp, err := x.Get(prefixRec + u.Key)
			if errors.Is(err, kv.ErrNotFound) {
				continue // already deleted, or never was: nothing to do
			}
			if err != nil {
				return err
			}
			scopes, value, err := s.openValue(u.Key, kvp.Value)
			if err != nil {
				return err
			}
			if !visible(scopes, scope) {
				return badRequest("used: key %q is not in this node's scope %s", clip(u.Key), scope)
			}
			var c token.BackupCode
			if err := json.Unmarshal(value, &c); err != nil {
				return fmt.Errorf("decode %s: %w", u.Key, err)
			}
			if err := x.Delete(prefixRec + u.Key); err != nil {
				return err
			}
			action := "backup_code_used"
			if !c.Expires.IsZero() {
				action = "passcode_used"
			}
			reason := fmt.Sprintf("id %s used at %s", c.ID, u.At.UTC().Format(time.RFC3339))
			if err := x.audit(now, "node:"+n.Name, action, "user/"+c.User, reason); err != nil {
				return err
			}
			deleted = append(deleted, c.ID)
		}
		return nil
	})
	if err != nil {
		if re, ok := refusal.As(err); ok {
			s.log.Warn("used report refused", "node", n.Name, "err", err)
			writeRefusal(w, re)
			return
		}
		s.storeFailed(w, "used report", err, "node", n.Name)
		return
	}
	if len(deleted) > 0 {
		s.log.Info("used codes deleted", "node", n.Name, "revision", rev, "ids", deleted)
	}
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": int64(len(deleted)), "revision": rev})
}
