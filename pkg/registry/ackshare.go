package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// Shared acknowledgements. A node acknowledges to the replica it streams from, which keeps the ack
// in memory (writing every ack would make a revision per node per bookmark). On a store that
// several replicas share (etcd), the portal's "active on N of M login nodes", served by any
// replica, needs the acks of the others' nodes too. They are published on demand:
//
//	portal/acks-wanted  ackWanted JSON: a page is counting the nodes that applied revision rev,
//	                    until until; written by the replica serving the count while it is short
//	                    (at most every 10 s per replica, or for a newer revision)
//	nodeack/NAME        sharedAck JSON: the revision node NAME acknowledged; and mac
//
// Every replica sees the wish in its tail of the store and publishes, in one kv.Update every
// ackShareEvery, the acks of its nodes that reached the wished revision and were not published
// at it yet (those it already has at once, the others as they come). Nothing is written while no
// page is counting, and publishing changes no record, so it never calls for more. A bbolt store
// has one registry process: nothing is published there.
const (
	prefixAck     = "nodeack/"
	kindAck       = "nodeack"
	keyAckWanted  = "portal/acks-wanted"
	ackShareEvery = time.Second
	ackWantedFor  = 30 * time.Second // how long a wish lasts
	ackAskEvery   = 10 * time.Second // a replica renews its wish at most this often
)

// ackWanted is the kv value of portal/acks-wanted.
type ackWanted struct {
	Rev   int64     `json:"rev"`
	Until time.Time `json:"until"`
}

// sharedAck is the kv value of nodeack/NAME.
type sharedAck struct {
	Rev int64  `json:"rev"`
	MAC []byte `json:"mac,omitempty"`
}

// ackShare is the publishing state of a replica on a shared store.
type ackShare struct {
	pending   map[string]int64 // node: acknowledged revision to publish
	published map[string]int64 // node: revision this replica last published
	wanted    ackWanted        // the latest wish in the store
	asked     ackWanted        // the wish this replica last wrote
	done      chan struct{}    // closed when shareAcksLoop has ended
}

// sharesAcks says whether the store is shared by several replicas (etcd).
func sharesAcks(st kv.Store) bool {
	if t, ok := st.(timedStore); ok {
		st = t.Store
	}
	_, ok := st.(*kv.Etcd)
	return ok
}

// noteAck queues node's acknowledged revision rev for publishing when a page wants the nodes
// that reached a revision, rev is one of them, and what was published for the node is not
// (s.mu held).
func (s *Server) noteAck(node string, rev int64) {
	if s.share == nil {
		return
	}
	w := s.share.wanted
	if w.Rev == 0 || !s.now().Before(w.Until) {
		return
	}
	if rev >= w.Rev && s.share.published[node] < w.Rev && rev > s.share.pending[node] {
		s.share.pending[node] = rev
	}
}

// onAckWanted takes a wish from the store (the tail): the acks already here that it wants are
// queued at once.
func (s *Server) onAckWanted(raw []byte) {
	if s.share == nil {
		return
	}
	var w ackWanted
	if err := json.Unmarshal(raw, &w); err != nil || w.Rev <= 0 {
		s.log.Warn("ignoring a malformed "+keyAckWanted, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.share.wanted = w
	for node, a := range s.acks {
		s.noteAck(node, a.Rev)
	}
}

// askAcks writes the wish for the acks of the nodes that applied rev, unless this replica wished
// for rev or a later one less than ackAskEvery ago.
func (s *Server) askAcks(ctx context.Context, rev int64) {
	if s.share == nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	a := s.share.asked
	if rev <= a.Rev && now.Before(a.Until.Add(ackAskEvery-ackWantedFor)) {
		s.mu.Unlock()
		return
	}
	w := ackWanted{Rev: rev, Until: now.Add(ackWantedFor).UTC()}
	if now.Before(a.Until) {
		w.Rev = max(rev, a.Rev)
	}
	s.share.asked = w
	s.mu.Unlock()
	b, err := json.Marshal(w)
	if err == nil {
		_, err = s.store.Update(ctx, func(tx kv.Txn) error { return tx.Put(keyAckWanted, b) })
	}
	if err != nil {
		s.mu.Lock()
		s.share.asked = a // ask again at the next count
		s.mu.Unlock()
		if ctx.Err() == nil {
			s.log.Warn("ask the other replicas for their nodes' acks", "err", err)
		}
	}
}

// shareAcksLoop publishes the queued acks every ackShareEvery until ctx ends.
func (s *Server) shareAcksLoop(ctx context.Context) {
	defer close(s.share.done)
	t := time.NewTicker(ackShareEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.publishAcks(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("publish node acknowledgements for the other replicas; retrying", "err", err)
			}
		}
	}
}

// publishAcks writes the queued acks of nodes that still exist, in one transaction.
func (s *Server) publishAcks(ctx context.Context) error {
	s.mu.Lock()
	batch := s.share.pending
	s.share.pending = map[string]int64{}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	_, err := s.store.Update(ctx, func(tx kv.Txn) error {
		for node, rev := range batch {
			if _, err := tx.Get(prefixNode + node); errors.Is(err, kv.ErrNotFound) {
				continue // removed meanwhile: deleteNode removed its ack too
			} else if err != nil {
				return err
			}
			b, err := encodeAck(s.sealer, node, rev)
			if err != nil {
				return err
			}
			if err := tx.Put(prefixAck+node, b); err != nil {
				return err
			}
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for node, rev := range batch {
		switch {
		case err != nil && rev > s.share.pending[node]:
			s.share.pending[node] = rev // again next time, unless a newer one came
		case err == nil && rev > s.share.published[node]:
			s.share.published[node] = rev
		}
	}
	return err
}

func encodeAck(k Sealer, node string, rev int64) ([]byte, error) {
	mac, err := recordMAC(k, kindAck, prefixAck+node, rev)
	if err != nil {
		return nil, err
	}
	return json.Marshal(sharedAck{Rev: rev, MAC: mac})
}

// sharedAcks reads the published acks: node name to revision. One that fails authentication is
// refused and logged, as every record is.
func (s *Server) sharedAcks(x *txn) (map[string]int64, error) {
	out := map[string]int64{}
	if s.share == nil {
		return out, nil
	}
	err := x.Range(prefixAck, func(kvp kv.KeyValue) error {
		var v sharedAck
		if err := json.Unmarshal(kvp.Value, &v); err != nil {
			refused(s.log, kvp.Key, fmt.Errorf("%w: %w", errBadRecord, err))
			return nil
		}
		if err := checkRecord(s.sealer, kindAck, kvp.Key, v.Rev, v.MAC); err != nil {
			refused(s.log, kvp.Key, err)
			return nil
		}
		out[strings.TrimPrefix(kvp.Key, prefixAck)] = v.Rev
		return nil
	})
	return out, err
}
