package kv

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// BoltOptions tune OpenBolt.
type BoltOptions struct {
	// Timeout bounds the wait for the file lock held by another process (default 3 s).
	Timeout time.Duration
	// HistoryLimit keeps at most this many revisions of history: every Update drops what falls
	// out, and OpenBolt trims an older, longer history. 0 keeps everything until Compact.
	HistoryLimit int64
}

// Bolt is a Store in one bbolt file, for a single process that opens it once and keeps it open.
type Bolt struct {
	db    *bolt.DB
	path  string
	limit int64

	wmu       chan struct{} // one writer (Update, Compact, Close) at a time; a send acquires
	rev       atomic.Int64
	compacted atomic.Int64
	closed    atomic.Bool

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each new revision; closed for good by Close
}

var _ Store = (*Bolt)(nil)

// Layout; see doc.go.
var (
	bucketKV      = []byte("kv")
	bucketHistory = []byte("history")
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
	keyRev        = []byte("rev")
	keyCompacted  = []byte("compacted")
)

const (
	formatVersion = 1       // meta "format"
	eventVersion  = 1       // first byte of a history value
	mmapSize      = 1 << 30 // address space only; keeps long Views from blocking growth
	compactChunk  = 10000   // history entries deleted per transaction by Compact
	historyKeyLen = 12      // rev (8 bytes BE) + sequence within the revision (4 bytes BE)
)

// errNoChange rolls back an Update whose fn changed nothing.
var errNoChange = errors.New("no change")

// errTxDone: a Txn used after its function returned.
var errTxDone = errors.New("kv: transaction used after its function returned")

// OpenBolt opens or creates the store at path (root 0600; its directory root 0700, created if
// missing). Files and directories that are symlinks, not owned by the effective user, or
// readable by group or others are refused.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.HistoryLimit < 0 {
		return nil, fmt.Errorf("open kv store %s: history limit %d: %w", path, opts.HistoryLimit, ErrInvalid)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	if err := securefile.MkdirAll(filepath.Dir(path), securefile.SecretDir); err != nil {
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         timeout,
		InitialMmapSize: mmapSize,
		FreelistType:    bolt.FreelistMapType,
		OpenFile: func(p string, flag int, _ fs.FileMode) (*os.File, error) {
			return securefile.Open(p, flag, 0o600, securefile.Rule{Forbidden: 0o077, What: "kv store"})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	b := &Bolt{db: db, path: path, limit: opts.HistoryLimit, wmu: make(chan struct{}, 1),
		changed: make(chan struct{})}
	var rev, compacted int64
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errors.New("not a kv store") }); err != nil {
				return err
			}
			for _, name := range [][]byte{bucketKV, bucketHistory, bucketMeta} {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			m = tx.Bucket(bucketMeta)
			for _, k := range [][]byte{keyFormat, keyRev, keyCompacted} {
				v := int64(0)
				if bytes.Equal(k, keyFormat) {
					v = formatVersion
				}
				if err := m.Put(k, be64(v)); err != nil {
					return err
				}
			}
		}
		if f, err := metaInt(m, keyFormat); err != nil || f != formatVersion {
			return fmt.Errorf("unknown format (%d, %v)", f, err)
		}
		if tx.Bucket(bucketKV) == nil || tx.Bucket(bucketHistory) == nil {
			return errors.New("missing bucket")
		}
		if rev, err = metaInt(m, keyRev); err != nil {
			return err
		}
		compacted, err = metaInt(m, keyCompacted)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	b.rev.Store(rev)
	b.compacted.Store(compacted)
	if b.limit > 0 && rev-compacted > b.limit {
		if err := b.Compact(context.Background(), rev-b.limit); err != nil {
			db.Close()
			return nil, fmt.Errorf("open kv store %s: trim history: %w", path, err)
		}
	}
	return b, nil
}

// Path returns the file the store lives in.
func (b *Bolt) Path() string { return b.path }

// Rev implements Store.
func (b *Bolt) Rev() int64 { return b.rev.Load() }

// CompactedRev implements Store.
func (b *Bolt) CompactedRev() int64 { return b.compacted.Load() }

// Changed implements Store.
func (b *Bolt) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *Bolt) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
}

// lockWrite takes the writer slot, or gives up when ctx ends or the store is closed.
func (b *Bolt) lockWrite(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case b.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if b.closed.Load() {
		<-b.wmu
		return ErrClosed
	}
	return nil
}

func (b *Bolt) unlockWrite() { <-b.wmu }

// Update implements Store.
func (b *Bolt) Update(ctx context.Context, fn func(Txn) error) (int64, error) {
	if err := b.lockWrite(ctx); err != nil {
		return 0, err
	}
	defer b.unlockWrite()
	var rev, compacted int64
	created := false
	err := b.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		cur, err := metaInt(m, keyRev)
		if err != nil {
			return err
		}
		if compacted, err = metaInt(m, keyCompacted); err != nil {
			return err
		}
		t := &boltTxn{kv: tx.Bucket(bucketKV), writable: true, rev: cur + 1, orig: map[string]*KeyValue{}}
		err = fn(t)
		t.done = true
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rev = cur
		n, err := t.record(tx.Bucket(bucketHistory))
		if err != nil || n == 0 {
			return cmp.Or(err, errNoChange)
		}
		rev = cur + 1
		if err := m.Put(keyRev, be64(rev)); err != nil {
			return err
		}
		if b.limit > 0 && rev-compacted > b.limit {
			if _, _, err := deleteHistory(tx.Bucket(bucketHistory), rev-b.limit, -1); err != nil {
				return err
			}
			compacted = rev - b.limit
			if err := m.Put(keyCompacted, be64(compacted)); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	switch {
	case err == errNoChange:
		return rev, nil
	case errors.Is(err, bberrors.ErrDatabaseNotOpen):
		return 0, ErrClosed
	case err != nil:
		return 0, err
	}
	if created {
		b.rev.Store(rev)
		b.compacted.Store(compacted)
		b.notify()
	}
	return rev, nil
}

// View implements Store.
func (b *Bolt) View(ctx context.Context, fn func(rev int64, tx Txn) error) error {
	return b.view(ctx, func(tx *bolt.Tx, rev, _ int64) error {
		t := &boltTxn{kv: tx.Bucket(bucketKV)}
		err := fn(rev, t)
		t.done = true
		return err
	})
}

// view runs fn in a read transaction with the revision and compacted revision it sees.
func (b *Bolt) view(ctx context.Context, fn func(tx *bolt.Tx, rev, compacted int64) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := b.db.Begin(false)
	if err != nil {
		if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return fmt.Errorf("kv: begin: %w", err)
	}
	defer tx.Rollback()
	m := tx.Bucket(bucketMeta)
	rev, err := metaInt(m, keyRev)
	if err != nil {
		return err
	}
	compacted, err := metaInt(m, keyCompacted)
	if err != nil {
		return err
	}
	return fn(tx, rev, compacted)
}

// Events implements Store.
func (b *Bolt) Events(ctx context.Context, prefix string, since int64, limit int) ([]Event, error) {
	if since < 0 {
		return nil, fmt.Errorf("kv: events since %d: %w", since, ErrInvalid)
	}
	var out []Event
	err := b.view(ctx, func(tx *bolt.Tx, rev, compacted int64) error {
		if since < compacted {
			return fmt.Errorf("kv: events since %d: history starts after %d: %w", since, compacted, ErrCompacted)
		}
		if since >= rev {
			return nil
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketHistory).Cursor()
		var last int64 // revision of the last event taken
		n := 0
		for k, v := c.Seek(historyKey(since+1, 0)); k != nil; k, v = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			r, err := parseHistoryKey(k)
			if err != nil {
				return err
			}
			if limit > 0 && len(out) >= limit && r != last {
				break
			}
			e, err := parseEvent(r, v)
			if err != nil {
				return fmt.Errorf("kv: history at revision %d: %w", r, err)
			}
			if !bytes.HasPrefix(e.key, p) {
				continue
			}
			out = append(out, e.event(r))
			last = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Compact implements Store. It deletes in chunks of bounded size, each its own transaction, so a
// large compaction holds up writers only briefly at a time.
func (b *Bolt) Compact(ctx context.Context, rev int64) error {
	for {
		if rev <= b.compacted.Load() {
			return nil
		}
		done, err := b.compactChunk(ctx, rev)
		if err != nil || done {
			return err
		}
	}
}

func (b *Bolt) compactChunk(ctx context.Context, rev int64) (done bool, err error) {
	if err := b.lockWrite(ctx); err != nil {
		return false, err
	}
	defer b.unlockWrite()
	var compacted int64
	err = b.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		cur, err := metaInt(m, keyRev)
		if err != nil {
			return err
		}
		if rev > cur {
			return fmt.Errorf("kv: compact to %d beyond revision %d: %w", rev, cur, ErrInvalid)
		}
		if compacted, err = metaInt(m, keyCompacted); err != nil {
			return err
		}
		if rev <= compacted {
			done = true
			return errNoChange
		}
		var last int64
		last, done, err = deleteHistory(tx.Bucket(bucketHistory), rev, compactChunk)
		if err != nil {
			return err
		}
		// A chunk that stopped inside revision last leaves the rest of it unreadable already.
		if compacted = rev; !done {
			compacted = last
		}
		return m.Put(keyCompacted, be64(compacted))
	})
	if err == errNoChange {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	b.compacted.Store(compacted)
	return done, nil
}

// deleteHistory deletes history entries of revisions up to and including upTo, at most max of
// them (max < 0: all). It returns the revision of the last entry deleted and whether none are
// left.
func deleteHistory(h *bolt.Bucket, upTo int64, max int) (last int64, done bool, err error) {
	var keys [][]byte
	c := h.Cursor()
	for k, _ := c.First(); ; k, _ = c.Next() {
		if k == nil {
			done = true
			break
		}
		r, err := parseHistoryKey(k)
		if err != nil {
			return 0, false, err
		}
		if r > upTo {
			done = true
			break
		}
		if max >= 0 && len(keys) >= max {
			break
		}
		keys = append(keys, slices.Clone(k))
		last = r
	}
	for _, k := range keys {
		if err := h.Delete(k); err != nil {
			return 0, false, err
		}
	}
	return last, done, nil
}

// Close implements Store. It waits for a running Update and for open Views.
func (b *Bolt) Close() error {
	b.wmu <- struct{}{}
	defer b.unlockWrite()
	if b.closed.Swap(true) {
		return nil
	}
	err := b.db.Close()
	b.mu.Lock()
	close(b.changed) // and never replaced: Changed returns a closed channel from now on
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close kv store %s: %w", b.path, err)
	}
	return nil
}

// boltTxn is a Txn on the kv bucket. A writable one remembers each key's state before its first
// write, so the revision's events are the net effect.
type boltTxn struct {
	kv       *bolt.Bucket
	writable bool
	rev      int64 // writable: the revision being made
	done     bool
	writes   int                  // counts Put and Delete, so Range knows its cursor may be stale
	orig     map[string]*KeyValue // writable: state before the first write (nil: absent)
}

func (t *boltTxn) Get(key string) (KeyValue, error) {
	if t.done {
		return KeyValue{}, errTxDone
	}
	v := t.kv.Get([]byte(key))
	if v == nil {
		return KeyValue{}, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return decodeValue(key, v)
}

func (t *boltTxn) Range(prefix string, fn func(KeyValue) error) error {
	if t.done {
		return errTxDone
	}
	p := []byte(prefix)
	c := t.kv.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); {
		kv, err := decodeValue(string(k), v)
		if err != nil {
			return err
		}
		w := t.writes
		if err := fn(kv); err != nil {
			return err
		}
		if t.writes == w {
			k, v = c.Next()
			continue
		}
		// fn wrote: bbolt cursors do not survive changes, so find the next key afresh.
		c = t.kv.Cursor()
		if k, v = c.Seek([]byte(kv.Key)); k != nil && string(k) == kv.Key {
			k, v = c.Next()
		}
	}
	return nil
}

func (t *boltTxn) Put(key string, value []byte) error {
	if err := t.writeCheck(key); err != nil {
		return err
	}
	if len(value) > MaxValueLen {
		return fmt.Errorf("put %q: value of %d bytes, want at most %d: %w", key, len(value), MaxValueLen, ErrInvalid)
	}
	k := []byte(key)
	if err := t.remember(key, k); err != nil {
		return err
	}
	v := make([]byte, 8+len(value)) // bbolt keeps the slice until commit
	binary.BigEndian.PutUint64(v, uint64(t.rev))
	copy(v[8:], value)
	if err := t.kv.Put(k, v); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	t.writes++
	return nil
}

func (t *boltTxn) Delete(key string) error {
	if err := t.writeCheck(key); err != nil {
		return err
	}
	k := []byte(key)
	if t.kv.Get(k) == nil {
		return fmt.Errorf("delete %q: %w", key, ErrNotFound)
	}
	if err := t.remember(key, k); err != nil {
		return err
	}
	if err := t.kv.Delete(k); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	t.writes++
	return nil
}

func (t *boltTxn) writeCheck(key string) error {
	switch {
	case t.done:
		return errTxDone
	case !t.writable:
		return ErrReadOnly
	}
	return checkKey(key)
}

func (t *boltTxn) remember(key string, k []byte) error {
	if _, ok := t.orig[key]; ok {
		return nil
	}
	var prev *KeyValue
	if v := t.kv.Get(k); v != nil {
		kv, err := decodeValue(key, v)
		if err != nil {
			return err
		}
		prev = &kv
	}
	t.orig[key] = prev
	return nil
}

// record writes the net effect of the transaction's writes to h as revision t.rev, in key order,
// and returns the number of events.
func (t *boltTxn) record(h *bolt.Bucket) (int, error) {
	keys := make([]string, 0, len(t.orig))
	for k := range t.orig {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h.FillPercent = 0.95 // appended in key order
	n := 0
	for _, k := range keys {
		e := Event{Rev: t.rev, Key: k, Prev: t.orig[k]}
		if v := t.kv.Get([]byte(k)); v != nil {
			e.Type, e.Value = Put, v[8:]
		} else if e.Prev != nil {
			e.Type = Delete
		} else {
			continue // created and deleted again
		}
		if err := h.Put(historyKey(t.rev, uint32(n)), encodeEvent(&e)); err != nil {
			return 0, fmt.Errorf("kv: write history: %w", err)
		}
		n++
	}
	return n, nil
}

// decodeValue decodes a kv bucket value (modrev + value) into a KeyValue with its own copy.
func decodeValue(key string, v []byte) (KeyValue, error) {
	if len(v) < 8 {
		return KeyValue{}, fmt.Errorf("kv: value of %q: corrupt (%d bytes)", key, len(v))
	}
	return KeyValue{Key: key, Value: bytes.Clone(v[8:]), ModRev: int64(binary.BigEndian.Uint64(v))}, nil
}

func historyKey(rev int64, seq uint32) []byte {
	k := make([]byte, historyKeyLen)
	binary.BigEndian.PutUint64(k, uint64(rev))
	binary.BigEndian.PutUint32(k[8:], seq)
	return k
}

func parseHistoryKey(k []byte) (int64, error) {
	if len(k) != historyKeyLen {
		return 0, fmt.Errorf("kv: corrupt history key (%d bytes)", len(k))
	}
	r := int64(binary.BigEndian.Uint64(k))
	if r <= 0 {
		return 0, fmt.Errorf("kv: corrupt history key (revision %d)", r)
	}
	return r, nil
}

func be64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func metaInt(m *bolt.Bucket, k []byte) (int64, error) {
	v := m.Get(k)
	if len(v) != 8 {
		return 0, fmt.Errorf("kv: corrupt meta %s", k)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// encodeEvent encodes e's type, key, value and previous value (the revision is in the history key):
//
//	version(1) type(1) uvarint(len key) key [Put: uvarint(len value) value]
//	prev(1: 0 or 1) [1: uvarint(prev modrev) uvarint(len prev value) prev value]
func encodeEvent(e *Event) []byte {
	n := 3 + 4*binary.MaxVarintLen64 + len(e.Key) + len(e.Value)
	if e.Prev != nil {
		n += len(e.Prev.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, eventVersion, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	if e.Type == Put {
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	if e.Prev == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(e.Prev.ModRev))
	b = binary.AppendUvarint(b, uint64(len(e.Prev.Value)))
	return append(b, e.Prev.Value...)
}

// rawEvent is a parsed history value whose slices point into the encoded bytes.
type rawEvent struct {
	typ       EventType
	key       []byte
	value     []byte
	hasPrev   bool
	prevRev   int64
	prevValue []byte
}

// event copies r out of the database's memory.
func (r *rawEvent) event(rev int64) Event {
	e := Event{Rev: rev, Type: r.typ, Key: string(r.key)}
	if r.typ == Put {
		e.Value = append([]byte{}, r.value...)
	}
	if r.hasPrev {
		e.Prev = &KeyValue{Key: e.Key, Value: append([]byte{}, r.prevValue...), ModRev: r.prevRev}
	}
	return e
}

// decodeEvent decodes the history value b of revision rev, checking every length and field.
func decodeEvent(rev int64, b []byte) (Event, error) {
	r, err := parseEvent(rev, b)
	if err != nil {
		return Event{}, err
	}
	return r.event(rev), nil
}

func parseEvent(rev int64, b []byte) (rawEvent, error) {
	var r rawEvent
	if rev <= 0 {
		return r, fmt.Errorf("corrupt event: revision %d", rev)
	}
	if len(b) < 2 || b[0] != eventVersion {
		return r, errors.New("corrupt event: bad header")
	}
	r.typ = EventType(b[1])
	if r.typ != Put && r.typ != Delete {
		return r, fmt.Errorf("corrupt event: type %d", b[1])
	}
	rest := b[2:]
	var err error
	if r.key, rest, err = lengthPrefixed(rest, MaxKeyLen); err != nil {
		return r, fmt.Errorf("corrupt event: key: %w", err)
	}
	if len(r.key) == 0 {
		return r, errors.New("corrupt event: empty key")
	}
	if r.typ == Put {
		if r.value, rest, err = lengthPrefixed(rest, MaxValueLen); err != nil {
			return r, fmt.Errorf("corrupt event: value: %w", err)
		}
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

// lengthPrefixed splits a uvarint length and that many bytes (at most max) off b.
func lengthPrefixed(b []byte, max int) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	switch {
	case w <= 0:
		return nil, nil, errors.New("bad length")
	case n > uint64(max) || n > uint64(len(b)-w):
		return nil, nil, fmt.Errorf("length %d exceeds %d bytes left or limit %d", n, len(b)-w, max)
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}
