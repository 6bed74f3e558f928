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

// Shared acknowledgements. A node acknowledges to the replica it streams from, which keeps the
// ack in memory (writing every ack would make a revision per node per bookmark). On a store that
// several replicas share (etcd), what another replica needs to know — that a node has applied a
// record change, for the portal's "active on N of M login nodes" — is published as well:
//
//	nodeack/NAME   sharedAck JSON: the revision the node acknowledged; and mac
//
// A replica publishes a node's ack only when it covers a record change that the published one
// did not (the last record change of the store, whatever its scope), in one kv.Update every
// ackShareEvery for all such nodes: one write a second per replica while changes flow and none
// when they do not. Its own writes change no record, so they never call for another. A bbolt
// store has one registry process: nothing is published there.
const (
	prefixAck     = "nodeack/"
	kindAck       = "nodeack"
	ackShareEvery = time.Second
)

// sharedAck is the kv value of nodeack/NAME.
type sharedAck struct {
	Rev int64  `json:"rev"`
	MAC []byte `json:"mac,omitempty"`
}

// ackShare is the publishing state of a replica on a shared store.
type ackShare struct {
	pending   map[string]int64 // node: acknowledged revision to publish
	published map[string]int64 // node: revision this replica last published
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

// noteAck queues node's acknowledged revision rev for publishing when it covers the last record
// change and what was published for the node does not (s.mu held).
func (s *Server) noteAck(node string, rev int64) {
	if s.share == nil {
		return
	}
	last := s.idx.lastChangeRev()
	if rev >= last && s.share.published[node] < last && rev > s.share.pending[node] {
		s.share.pending[node] = rev
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
