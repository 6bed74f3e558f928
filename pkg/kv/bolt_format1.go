package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Format 1 of the Bolt store kept values twice: bucket "kv" held key -> modrev | value, and every
// history entry carried its value and a copy of the previous one:
//
//	version(1) type(1) uvarint(len key) key [Put: uvarint(len value) value]
//	prev(1: 0 or 1) [uvarint(prev modrev) uvarint(len prev value) prev value]
//
// OpenBolt converts such a file to format 2 once, in the transaction that opens it.

const format1EventVersion = 1 // first byte of a format 1 history value

// convertFormat1 rewrites the kv and history buckets of a format 1 store, whose history is
// compacted up to compacted, to format 2 in tx. The retained history keeps its history keys, so
// the references follow from a scan in revision order; a value whose entry fell to compaction (a
// current value, or the previous value of a retained event) gets an entry at the revision that
// wrote it, below the compacted revision, where nothing else is read. It holds the history in
// memory until it writes it back: this runs once per store.
func convertFormat1(tx *bolt.Tx, compacted int64) error {
	h, kvb := tx.Bucket(bucketHistory), tx.Bucket(bucketKV)
	type put struct{ k, v []byte }
	var dead [][]byte // history keys at or below compacted: unreadable already
	var puts []put    // history entries to write
	type latest struct {
		ref []byte
		typ EventType
	}
	last := map[string]latest{} // latest history entry of each key
	nextSeq := map[int64]uint32{}
	// restore writes an entry for a value whose own entry was compacted away.
	restore := func(rev int64, key, value []byte) []byte {
		ref := historyKey(rev, nextSeq[rev])
		nextSeq[rev]++
		puts = append(puts, put{ref, encodeEntry(Put, key, value, nil)})
		return ref
	}
	c := h.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := parseHistoryKey(k)
		if err != nil {
			return err
		}
		if r <= compacted {
			dead = append(dead, slices.Clone(k))
			continue
		}
		e, err := parseEventV1(r, v)
		if err != nil {
			return fmt.Errorf("history at revision %d: %w", r, err)
		}
		l, seen := last[string(e.key)]
		var prev []byte
		switch {
		case e.hasPrev && seen:
			if l.typ != Put || int64(binary.BigEndian.Uint64(l.ref)) != e.prevRev {
				return fmt.Errorf("history at revision %d: previous value of %q not from revision %d", r, e.key, e.prevRev)
			}
			prev = l.ref
		case e.hasPrev && e.prevRev <= compacted:
			prev = restore(e.prevRev, e.key, e.prevValue)
		case e.hasPrev:
			return fmt.Errorf("history at revision %d: previous value of %q from revision %d missing", r, e.key, e.prevRev)
		case seen && l.typ == Put:
			return fmt.Errorf("history at revision %d: %q without its previous value", r, e.key)
		}
		ref := slices.Clone(k)
		puts = append(puts, put{ref, encodeEntry(e.typ, e.key, e.value, prev)})
		last[string(e.key)] = latest{ref, e.typ}
	}
	var refs []put // kv bucket: key -> reference
	c = kvb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) < 8 {
			return fmt.Errorf("value of %q: corrupt (%d bytes)", k, len(v))
		}
		modrev := int64(binary.BigEndian.Uint64(v))
		l, seen := last[string(k)]
		switch {
		case seen && (l.typ != Put || int64(binary.BigEndian.Uint64(l.ref)) != modrev):
			return fmt.Errorf("value of %q from revision %d is not its last history entry", k, modrev)
		case seen:
			refs = append(refs, put{slices.Clone(k), l.ref})
		case modrev <= 0 || modrev > compacted:
			return fmt.Errorf("value of %q from revision %d missing from the history", k, modrev)
		default:
			refs = append(refs, put{slices.Clone(k), restore(modrev, k, v[8:])})
		}
	}
	for _, k := range dead {
		if err := h.Delete(k); err != nil {
			return err
		}
	}
	for _, p := range puts {
		if err := h.Put(p.k, p.v); err != nil {
			return err
		}
	}
	for _, p := range refs {
		if err := kvb.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

// eventV1 is a parsed format 1 history value whose slices point into the encoded bytes.
type eventV1 struct {
	typ       EventType
	key       []byte
	value     []byte
	hasPrev   bool
	prevRev   int64
	prevValue []byte
}

// parseEventV1 parses the format 1 history value b of revision rev, checking every length and
// field.
func parseEventV1(rev int64, b []byte) (eventV1, error) {
	var r eventV1
	var rest []byte
	var err error
	if r.typ, r.key, r.value, rest, err = parseHead(format1EventVersion, rev, b); err != nil {
		return r, fmt.Errorf("corrupt event: %w", err)
	}
	if len(rest) == 0 {
		return r, errors.New("corrupt event: truncated before prev")
	}
	switch rest[0] {
	case 0:
		rest = rest[1:]
		if r.typ == Delete {
			return r, errors.New("corrupt event: delete without a previous value")
		}
	case 1:
		r.hasPrev = true
		pr, n := binary.Uvarint(rest[1:])
		if n <= 0 || pr == 0 || pr >= uint64(rev) {
			return r, fmt.Errorf("corrupt event: previous revision not in [1, %d)", rev)
		}
		r.prevRev = int64(pr)
		if r.prevValue, rest, err = lengthPrefixed(rest[1+n:], MaxValueLen); err != nil {
			return r, fmt.Errorf("corrupt event: previous value: %w", err)
		}
	default:
		return r, fmt.Errorf("corrupt event: prev flag %d", rest[0])
	}
	if len(rest) != 0 {
		return r, fmt.Errorf("corrupt event: %d trailing bytes", len(rest))
	}
	return r, nil
}
