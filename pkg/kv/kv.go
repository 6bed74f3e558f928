package kv

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Implementations wrap them with detail; test with errors.Is.
var (
	// ErrCompacted: the history asked for was dropped by Compact or the history limit. A sync
	// client behind it needs a full snapshot.
	ErrCompacted = errors.New("kv: revision compacted")
	// ErrNotFound: Get or Delete of a key that does not exist.
	ErrNotFound = errors.New("kv: key not found")
	// ErrConflict: an Update could not commit because what it read changed meanwhile. Stores with
	// optimistic concurrency (etcd) return it when their retries run out; Bolt serialises writers
	// and never does. Callers may also return it from fn to abort a compare-and-set of their own.
	ErrConflict = errors.New("kv: compare failed")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("kv: store closed")
	// ErrReadOnly: Put or Delete inside View.
	ErrReadOnly = errors.New("kv: read-only transaction")
	// ErrInvalid: an empty or too long key, a too long value, or a bad argument.
	ErrInvalid = errors.New("kv: invalid argument")
	// ErrUnavailable: a networked store (etcd) did not answer within its request timeout or has
	// lost quorum. Nothing was written, except that an Update whose commit failed so may have
	// been applied (whole). Worth retrying later; a server answers 503.
	ErrUnavailable = errors.New("kv: store unavailable")
)

// Limits on keys and values, chosen to fit etcd's default request size as well as bbolt.
const (
	MaxKeyLen   = 4096
	MaxValueLen = 1 << 20
)

// KeyValue is one key and its value.
type KeyValue struct {
	Key   string
	Value []byte
	// ModRev is the revision of the last change of this key. Inside Update, a key the
	// transaction wrote has the revision the Update will commit as on Bolt, and 0 on etcd, where
	// that revision is known only once the commit succeeds.
	ModRev int64
}

// EventType says what an Event did.
type EventType int

// Event types.
const (
	Put EventType = iota + 1
	Delete
)

func (t EventType) String() string {
	switch t {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one key's change in one revision.
type Event struct {
	Rev   int64
	Type  EventType
	Key   string
	Value []byte    // the new value (never nil for Put, possibly empty); nil for Delete
	Prev  *KeyValue // the key before this revision; nil if it did not exist
}

// Txn reads and writes inside Update, or reads inside View. It is valid only until fn returns
// and is not safe for concurrent use.
//
// Within one Update, several writes of one key collapse to their net effect: the revision gets
// one event per key whose state differs from before fn ran (a Put always counts, even of an
// equal value; a Put then Delete of a key that did not exist leaves no trace).
type Txn interface {
	// Get returns key's value, or ErrNotFound. It sees this transaction's own writes.
	Get(key string) (KeyValue, error)
	// Range calls fn for every key under prefix ("" for all), sorted by key, and stops at
	// fn's first error, which it returns. It sees this transaction's own writes; fn may Put and
	// Delete (e.g. re-seal every record), and Range then goes on at the next key after the one
	// it passed to fn, as the transaction now stands.
	Range(prefix string, fn func(KeyValue) error) error
	// Put sets key to value (copied). ErrInvalid for an empty or oversized key or value.
	Put(key string, value []byte) error
	// Delete removes key, or returns ErrNotFound.
	Delete(key string) error
}

// Prefetch reads keys and the keys under prefixes into tx at once, so that the Gets and Ranges
// of them that follow in tx cost no round trip each; what they return is the same either way.
// On etcd it takes one request per 64 reads instead of one per read (a CSV import of 1000 new
// users reads 2000 times); on Bolt, where reads are local, it does nothing.
func Prefetch(tx Txn, keys, prefixes []string) error {
	if p, ok := tx.(interface {
		prefetch(keys, prefixes []string) error
	}); ok {
		return p.prefetch(keys, prefixes)
	}
	return nil
}

// Store is a revisioned key-value store, shaped like etcd's: every committed change gets a
// revision greater than any before it, and a history of changes can be read from any revision
// not yet compacted. The sync protocol uses its revisions as its own. On Bolt a revision is the
// previous plus one; on etcd revisions are etcd's, shared by every key of the cluster, so the
// revisions of one store's prefix have gaps where other prefixes wrote.
//
// All methods are safe for concurrent use. Do not call Update from inside Update or View
// (on Bolt writers are serialised; it deadlocks).
type Store interface {
	// Update runs fn in one serialisable write transaction. If fn changed anything, all its
	// changes get one new revision (greater than the previous; on Bolt the previous plus one),
	// are recorded in the history, and the new revision is returned. If it changed nothing,
	// Update returns the current revision (on etcd, the one fn read at) and writes no history.
	// If fn returns an error, nothing is written and Update returns (0, that error) unwrapped.
	// On etcd fn may run more than once (optimistic concurrency; see Etcd.Update), so it must not
	// act outside tx; Update returns ErrConflict when its attempts run out.
	Update(ctx context.Context, fn func(Txn) error) (rev int64, err error)
	// View runs fn on a consistent snapshot at the current revision, which it passes in. Put and
	// Delete on tx return ErrReadOnly. fn's error is returned unwrapped.
	View(ctx context.Context, fn func(rev int64, tx Txn) error) error
	// Events returns the history after since (exclusive) for keys under prefix, oldest first:
	// at most limit events (no limit if limit <= 0), but never splitting one revision's events,
	// so it may exceed limit to finish a revision. Events of one revision are ordered by key.
	// It returns ErrCompacted if since < CompactedRev(). A since beyond the current revision is
	// not an error: it finds nothing.
	//
	// An answer that did not reach limit is complete at least up to the Rev() read before the
	// call, even if it has no events (read Rev first, then Events, to send a bookmark).
	Events(ctx context.Context, prefix string, since int64, limit int) ([]Event, error)
	// Rev returns the current revision: 0 for a new Bolt store. On etcd it is the highest
	// revision the store has seen, which may trail the cluster's by a round trip.
	Rev() int64
	// CompactedRev returns the revision up to which (inclusive) history is gone:
	// Events(since) works if and only if since >= CompactedRev(). 0 for a new store.
	CompactedRev() int64
	// Compact drops the history up to and including rev. A rev at or below CompactedRev is a
	// no-op; a rev beyond the current revision is ErrInvalid.
	Compact(ctx context.Context, rev int64) error
	// Changed returns a channel that is closed when the next Update that creates a revision
	// commits, or when the store is closed. Take it before reading, then wait on it, and no
	// change is missed.
	Changed() <-chan struct{}
	// Close waits for running transactions and closes the store. Later calls return ErrClosed.
	Close() error
}

// checkKey validates a key for Put and Delete.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes, want 1 to %d: %w", len(key), MaxKeyLen, ErrInvalid)
	}
	return nil
}
