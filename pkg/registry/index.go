package registry

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// change is one record's change, opened: what every node's translation starts from.
type change struct {
	rev        int64
	key        string   // sync key ("t/USER/ID")
	value      []byte   // plaintext after the change; nil when deleted
	scopes     []string // scopes after the change
	prevValue  []byte   // plaintext before; nil when the record did not exist
	prevScopes []string
}

// frame translates the change for a node of scope: a put, a delete, or nothing (ok false).
func (c *change) frame(scope string) (f syncframe.Frame, ok bool) {
	now := c.value != nil && visible(c.scopes, scope)
	before := c.prevValue != nil && visible(c.prevScopes, scope)
	switch {
	case now && before && bytes.Equal(c.value, c.prevValue):
		return f, false // nothing the node would see changed (re-seal, other scopes changed)
	case now:
		return syncframe.Frame{Type: syncframe.Put, Rev: c.rev, Key: c.key, Value: c.value}, true
	case before:
		return syncframe.Frame{Type: syncframe.Delete, Rev: c.rev, Key: c.key}, true
	}
	return f, false
}

// decodeEvent opens a rec/ event into a change.
func (s *Server) decodeEvent(ev kv.Event) (change, error) {
	c := change{rev: ev.Rev, key: strings.TrimPrefix(ev.Key, prefixRec)}
	var err error
	// A record that fails authentication is visible nowhere, as in the snapshot and the digests.
	if ev.Type == kv.Put {
		if c.scopes, c.value, err = s.openValue(c.key, ev.Value); err != nil && !errors.Is(err, errBadRecord) {
			return c, err
		}
	}
	if ev.Prev != nil {
		if c.prevScopes, c.prevValue, err = s.openValue(c.key, ev.Prev.Value); err != nil && !errors.Is(err, errBadRecord) {
			return c, err
		}
	}
	return c, nil
}

// logMax bounds the in-memory log of recent changes (a few MB of plaintext records).
const logMax = 20000

// index is the per-scope count and digest at one revision, and the recent changes.
type index struct {
	mu       sync.Mutex
	rev      int64
	digests  map[string]*syncframe.Digest
	log      []change // every record change with logStart < rev <= index rev, in order
	logStart int64
	notify   chan struct{}     // closed and replaced whenever rev advances
	audit    *syncframe.Anchor // the latest authenticated audit head, for bookmarks (anchor.go)
}

func newIndex(rev int64, digests map[string]*syncframe.Digest) *index {
	return &index{rev: rev, digests: digests, logStart: rev, notify: make(chan struct{})}
}

// view returns a scope's revision, count and digest, and a channel closed at the next advance.
func (x *index) view(scope string) (rev, count int64, digest string, notify <-chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	d := x.digests[scope]
	if d == nil {
		d = &syncframe.Digest{}
	}
	return x.rev, d.Count(), d.String(), x.notify
}

// countAt's answers besides a count.
const (
	countOK     = iota
	countTooNew // the index has not reached the revision yet: wait for notify
	countTooOld // the revision is before the log: the index cannot take its changes back
)

// countAt returns the number of records of scope at revision rev: the count at the index's
// revision with the logged changes after rev taken back.
func (x *index) countAt(scope string, rev int64) (count int64, state int, notify <-chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case rev > x.rev:
		return 0, countTooNew, x.notify
	case rev < x.logStart:
		return 0, countTooOld, nil
	}
	if d := x.digests[scope]; d != nil {
		count = d.Count()
	}
	for i := len(x.log) - 1; i >= 0 && x.log[i].rev > rev; i-- {
		c := &x.log[i]
		if c.value != nil && visible(c.scopes, scope) {
			count--
		}
		if c.prevValue != nil && visible(c.prevScopes, scope) {
			count++
		}
	}
	return count, countOK, nil
}

func (x *index) revision() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rev
}

// changesAfter returns the logged changes after pos (about max of them, whole revisions) and the
// revision they are complete up to; ok is false when pos is older than the log.
func (x *index) changesAfter(pos int64, max int) (cs []change, upto int64, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if pos < x.logStart {
		return nil, 0, false
	}
	i := sort.Search(len(x.log), func(i int) bool { return x.log[i].rev > pos })
	j := min(i+max, len(x.log))
	for j < len(x.log) && j > i && x.log[j].rev == x.log[j-1].rev {
		j++
	}
	if j == len(x.log) {
		return x.log[i:j:j], x.rev, true
	}
	return x.log[i:j:j], x.log[j-1].rev, true
}

// apply advances the index to upto with the changes of the revisions up to it.
func (x *index) apply(upto int64, cs []change) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range cs {
		c := &cs[i]
		for _, sc := range c.prevScopes {
			if c.prevValue != nil {
				x.digest(sc).Remove(c.key, c.prevValue)
			}
		}
		for _, sc := range c.scopes {
			if c.value != nil {
				x.digest(sc).Add(c.key, c.value)
			}
		}
	}
	x.log = append(x.log, cs...)
	if n := len(x.log) - logMax; n > 0 {
		for n < len(x.log) && x.log[n].rev == x.log[n-1].rev {
			n++
		}
		x.logStart = x.log[n-1].rev
		x.log = x.log[n:]
		if cap(x.log) > 4*logMax {
			x.log = append([]change(nil), x.log...)
		}
	}
	if upto > x.rev {
		x.rev = upto
		close(x.notify)
		x.notify = make(chan struct{})
	}
}

// reset replaces the whole index (start, or after the tailer fell behind a compaction).
func (x *index) reset(rev int64, digests map[string]*syncframe.Digest) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.digests, x.log, x.logStart = digests, nil, rev
	x.rev = rev
	close(x.notify)
	x.notify = make(chan struct{})
}

func (x *index) digest(scope string) *syncframe.Digest {
	d := x.digests[scope]
	if d == nil {
		d = &syncframe.Digest{}
		x.digests[scope] = d
	}
	return d
}

// buildIndex reads every record at one revision into per-scope digests.
func (s *Server) buildIndex(ctx context.Context) (int64, map[string]*syncframe.Digest, error) {
	digests := map[string]*syncframe.Digest{}
	var rev int64
	err := s.store.View(ctx, func(r int64, tx kv.Txn) error {
		rev = r
		return tx.Range(prefixRec, func(kvp kv.KeyValue) error {
			key := strings.TrimPrefix(kvp.Key, prefixRec)
			scopes, value, err := s.openValue(key, kvp.Value)
			if errors.Is(err, errBadRecord) {
				return nil // refused and logged: visible nowhere
			}
			if err != nil {
				return err
			}
			for _, sc := range scopes {
				d := digests[sc]
				if d == nil {
					d = &syncframe.Digest{}
					digests[sc] = d
				}
				d.Add(key, value)
			}
			return nil
		})
	})
	return rev, digests, err
}

// tailBatch is how many events the tailer reads at once.
const tailBatch = 5000

// tail follows the store's history after each commit: it advances the index and ends the streams
// of nodes that were removed (or whose credential changed), also those removed by another
// registry process on the same etcd.
func (s *Server) tail(ctx context.Context) {
	defer close(s.tailDone)
	for {
		changed := s.store.Changed()
		since := s.idx.revision()
		before := s.store.Rev()
		if before <= since {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		evs, err := s.store.Events(ctx, "", since, tailBatch)
		if errors.Is(err, kv.ErrCompacted) {
			s.log.Warn("index fell behind the compacted history; rebuilding", "since", since)
			rev, d, err := s.buildIndex(ctx)
			if err == nil {
				s.idx.reset(rev, d)
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("read store history", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		upto := before
		if len(evs) >= tailBatch || (len(evs) > 0 && evs[len(evs)-1].Rev > upto) {
			upto = evs[len(evs)-1].Rev
		}
		var cs []change
		var gone []string
		for _, ev := range evs {
			switch {
			case strings.HasPrefix(ev.Key, prefixRec):
				c, err := s.decodeEvent(ev)
				if err != nil {
					s.log.Error("cannot open a record change; nodes may disagree until they resync", "key", ev.Key, "rev", ev.Rev, "err", err)
					continue
				}
				cs = append(cs, c)
			case strings.HasPrefix(ev.Key, prefixAudit) && ev.Type == kv.Put:
				s.advanceAnchor(ev.Key, ev.Value)
			case ev.Key == keyAckWanted && ev.Type == kv.Put:
				s.onAckWanted(ev.Value) // ackshare.go
			case strings.HasPrefix(ev.Key, prefixNode) && ev.Prev != nil:
				if ev.Type == kv.Delete || !bytes.Equal(ev.Value, ev.Prev.Value) {
					gone = append(gone, strings.TrimPrefix(ev.Key, prefixNode))
				}
			}
		}
		s.idx.apply(upto, cs)
		for _, n := range gone {
			s.closeStreams(n, errNodeRemoved)
		}
	}
}
