package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// The outbox of state.db holds what logins still owe the registry (docs/sync-protocol.md,
// "Claims and the failure budget"): the claims of codes accepted while the registry could not
// be asked, and the wrong codes, each written in the transaction of the login that made it, so a
// crash loses none. totp-syncd reports them and deletes what the registry took.

var bucketOutbox = []byte("outbox") // sequence (8 bytes, big-endian) -> token.LoginEvent

// maxOutbox bounds the outbox: beyond it the oldest events are dropped (a node cut off for
// long keeps its own counts; the registry then learns the newest).
const maxOutbox = 100000

// OutboxEvent is one event waiting in the outbox, with its place.
type OutboxEvent struct {
	Seq   uint64
	Event token.LoginEvent
}

// AddEvent queues a login event for the registry.
func (x *StateTx) AddEvent(e token.LoginEvent) error {
	b, err := x.tx.CreateBucketIfNotExists(bucketOutbox)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if seq > maxOutbox {
		if k, _ := b.Cursor().First(); k != nil && b.Stats().KeyN >= maxOutbox {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), encode(e))
}

// Outbox returns up to max queued events, oldest first. An event that does not decode is
// returned with an empty Kind, so the caller drops it.
func (x *StateTx) Outbox(max int) []OutboxEvent {
	b := x.bucket(bucketOutbox)
	if b == nil {
		return nil
	}
	var out []OutboxEvent
	c := b.Cursor()
	for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
		if len(k) != 8 {
			continue
		}
		var e token.LoginEvent
		if json.Unmarshal(v, &e) != nil {
			e = token.LoginEvent{}
		}
		out = append(out, OutboxEvent{Seq: binary.BigEndian.Uint64(k), Event: e})
	}
	return out
}

// OutboxLen counts the queued events.
func (x *StateTx) OutboxLen() int {
	b := x.bucket(bucketOutbox)
	if b == nil {
		return 0
	}
	return b.Stats().KeyN
}

// DeleteEvents removes events the registry took (or that cannot be sent).
func (x *StateTx) DeleteEvents(seqs []uint64) error {
	b := x.bucket(bucketOutbox)
	if b == nil {
		return nil
	}
	for _, s := range seqs {
		if err := b.Delete(binary.BigEndian.AppendUint64(nil, s)); err != nil {
			return err
		}
	}
	return nil
}

// SharedFailures returns the user's failure record of the registry (zero when none came).
func (x *TokensTx) SharedFailures(user string) (token.SharedFailures, error) {
	var f token.SharedFailures
	b := x.tx.Bucket(bucketUsers)
	if b == nil {
		return f, nil
	}
	v := b.Get(userKey(user, syncframe.FailuresID))
	if v == nil {
		return f, nil
	}
	if err := json.Unmarshal(v, &f); err != nil {
		return f, fmt.Errorf("failures record of %s: %v: %w", user, err, ErrSchema)
	}
	return f, nil
}
