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
	formatVersion = 2       // meta "format"; OpenBolt converts format 1 (bolt_format1.go)
	entryVersion  = 2       // first byte of a history value
	mmapSize      = 1 << 30 // address space only; keeps long Views from blocking growth
	compactChunk  = 10000   // history entries scanned per transaction by Compact
	historyKeyLen = 12      // rev (8 bytes BE) + sequence within the revision (4 bytes BE)
	pendingTag    = 0xff    // first byte of a kv value written by the running Update
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
		if tx.Bucket(bucketKV) == nil || tx.Bucket(bucketHistory) == nil {
			return errors.New("missing bucket")
		}
		if rev, err = metaInt(m, keyRev); err != nil {
			return err
		}
		if compacted, err = metaInt(m, keyCompacted); err != nil {
			return err
		}
		f, err := metaInt(m, keyFormat)
		if err == nil && f == 1 {
			if err := convertFormat1(tx, compacted); err != nil {
				return fmt.Errorf("convert from format 1: %w", err)
			}
			return m.Put(keyFormat, be64(formatVersion))
		}
		if err != nil || f != formatVersion {
			return fmt.Errorf("unknown format (%d, %v)", f, err)
		}
		return nil
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
		t := &boltTxn{kv: tx.Bucket(bucketKV), h: tx.Bucket(bucketHistory), writable: true, rev: cur + 1,
			orig: map[string][]byte{}}
		err = fn(t)
		t.done = true
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rev = cur
		n, err := t.record()
		if err != nil || n == 0 {
			return cmp.Or(err, errNoChange)
		}
		rev = cur + 1
		if err := m.Put(keyRev, be64(rev)); err != nil {
			return err
		}
		if b.limit > 0 && rev-compacted > b.limit {
			if _, _, err := compactHistory(tx.Bucket(bucketHistory), compacted, rev-b.limit, -1); err != nil {
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
		t := &boltTxn{kv: tx.Bucket(bucketKV), h: tx.Bucket(bucketHistory)}
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
		h := tx.Bucket(bucketHistory)
		c, pc := h.Cursor(), h.Cursor()
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
			e, err := parseEntry(r, v)
			if err != nil {
				return fmt.Errorf("kv: history at revision %d: %w", r, err)
			}
			if !bytes.HasPrefix(e.key, p) {
				continue
			}
			ev := Event{Rev: r, Type: e.typ, Key: string(e.key)}
			if e.typ == Put {
				ev.Value = bytes.Clone(e.value)
				if ev.Value == nil {
					ev.Value = []byte{}
				}
			}
			if e.prev != nil {
				prev, err := readPut(pc, e.key, e.prev)
				if err != nil {
					return fmt.Errorf("kv: history at revision %d: previous value: %w", r, err)
				}
				ev.Prev = &prev
			}
			out = append(out, ev)
			last = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Compact implements Store. It works in chunks of bounded size (whole revisions), each its own
// transaction, so a large compaction holds up writers only briefly at a time.
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
		last, done, err = compactHistory(tx.Bucket(bucketHistory), compacted, rev, compactChunk)
		if err != nil {
			return err
		}
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

// compactHistory compacts the history from revision from (exclusive, the compacted revision so
// far) up to upTo (inclusive): each entry there deletes the entry it supersedes (its reference to
// the key's previous entry), and a Delete entry deletes itself, so what is left at or below upTo
// is the latest Put of every key whose latest entry at or below upTo is a Put. It scans whole
// revisions, stopping after the first revision that brings the count to max (max < 0: no bound),
// and returns the last revision done and whether it reached upTo.
func compactHistory(h *bolt.Bucket, from, upTo int64, max int) (last int64, done bool, err error) {
	var dead [][]byte
	n := 0
	c := h.Cursor()
	for k, v := c.Seek(historyKey(from+1, 0)); ; k, v = c.Next() {
		if k == nil {
			last, done = upTo, true
			break
		}
		r, err := parseHistoryKey(k)
		if err != nil {
			return 0, false, err
		}
		if r > upTo {
			last, done = upTo, true
			break
		}
		if r != last && max >= 0 && n >= max {
			break
		}
		e, err := parseEntry(r, v)
		if err != nil {
			return 0, false, fmt.Errorf("kv: history at revision %d: %w", r, err)
		}
		if e.prev != nil {
			dead = append(dead, slices.Clone(e.prev))
		}
		if e.typ == Delete {
			dead = append(dead, slices.Clone(k))
		}
		last = r
		n++
	}
	for _, k := range dead {
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

// boltTxn is a Txn on the kv bucket, whose values it reads from the history bucket through their
// references. A writable one puts a written key's value in the kv bucket itself, tagged pending,
// and remembers each key's reference before its first write; record turns the net effect into
// history entries and references at the end.
type boltTxn struct {
	kv, h    *bolt.Bucket
	hc       *bolt.Cursor // on h, reused by reads: h changes only in record
	writable bool
	rev      int64 // writable: the revision being made
	done     bool
	writes   int               // counts Put and Delete, so Range knows its cursor may be stale
	orig     map[string][]byte // writable: reference before the first write (nil: absent)
}

func (t *boltTxn) Get(key string) (KeyValue, error) {
	if t.done {
		return KeyValue{}, errTxDone
	}
	v := t.kv.Get([]byte(key))
	if v == nil {
		return KeyValue{}, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return t.value([]byte(key), v)
}

// value returns key's value from its kv bucket value v: pending, or a reference into history.
func (t *boltTxn) value(key, v []byte) (KeyValue, error) {
	if t.writable && len(v) > 0 && v[0] == pendingTag { // View never sees one: a bad reference
		return KeyValue{Key: string(key), Value: bytes.Clone(v[1:]), ModRev: t.rev}, nil
	}
	if t.hc == nil {
		t.hc = t.h.Cursor()
	}
	return readPut(t.hc, key, v)
}

func (t *boltTxn) Range(prefix string, fn func(KeyValue) error) error {
	if t.done {
		return errTxDone
	}
	p := []byte(prefix)
	c := t.kv.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); {
		kv, err := t.value(k, v)
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
	t.remember(key, k)
	v := make([]byte, 1+len(value)) // bbolt keeps the slice until commit
	v[0] = pendingTag
	copy(v[1:], value)
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
	t.remember(key, k)
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

func (t *boltTxn) remember(key string, k []byte) {
	if _, ok := t.orig[key]; !ok {
		t.orig[key] = bytes.Clone(t.kv.Get(k)) // a reference: keys not yet written hold one
	}
}

// record writes the net effect of the transaction's writes to the history as revision t.rev, in
// key order, points the kv bucket at the new entries, and returns the number of entries.
func (t *boltTxn) record() (int, error) {
	keys := make([]string, 0, len(t.orig))
	for k := range t.orig {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t.h.FillPercent = 0.95 // appended in key order
	// Many keys come in key order (an import, a user's records), which bbolt's default of 0.5
	// would leave in half-empty pages; a page that a later key splits still splits.
	t.kv.FillPercent = 0.9
	n := 0
	for _, key := range keys {
		k, prev := []byte(key), t.orig[key]
		v := t.kv.Get(k)
		var entry []byte
		switch {
		case v != nil:
			entry = encodeEntry(Put, k, v[1:], prev)
		case prev != nil:
			entry = encodeEntry(Delete, k, nil, prev)
		default:
			continue // created and deleted again
		}
		ref := historyKey(t.rev, uint32(n))
		if err := t.h.Put(ref, entry); err != nil {
			return 0, fmt.Errorf("kv: write history: %w", err)
		}
		if v != nil {
			if err := t.kv.Put(k, ref); err != nil {
				return 0, fmt.Errorf("put %q: %w", key, err)
			}
		}
		n++
	}
	return n, nil
}

// readPut returns key's value from the Put entry at ref, found with the history cursor c, with its
// own copy of the value.
func readPut(c *bolt.Cursor, key, ref []byte) (KeyValue, error) {
	rev, err := parseHistoryKey(ref)
	if err != nil {
		return KeyValue{}, fmt.Errorf("kv: value of %q: %w", key, err)
	}
	k, b := c.Seek(ref)
	if !bytes.Equal(k, ref) {
		return KeyValue{}, fmt.Errorf("kv: value of %q: history entry of revision %d missing", key, rev)
	}
	e, err := parseEntry(rev, b)
	switch {
	case err != nil:
		return KeyValue{}, fmt.Errorf("kv: value of %q at revision %d: %w", key, rev, err)
	case e.typ != Put || !bytes.Equal(e.key, key):
		return KeyValue{}, fmt.Errorf("kv: value of %q at revision %d: corrupt: entry is a %v of %q", key, rev, e.typ, e.key)
	}
	v := bytes.Clone(e.value)
	if v == nil {
		v = []byte{}
	}
	return KeyValue{Key: string(key), Value: v, ModRev: rev}, nil
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

// encodeEntry encodes a history entry (the revision is in its history key):
//
//	version(1) type(1) uvarint(len key) key [Put: uvarint(len value) value]
//	prev(1: 0 or 1) [1: the history key (12 bytes) of the key's previous entry, a Put]
func encodeEntry(typ EventType, key, value, prev []byte) []byte {
	b := make([]byte, 0, 3+2*binary.MaxVarintLen64+len(key)+len(value)+historyKeyLen)
	b = append(b, entryVersion, byte(typ))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if typ == Put {
		b = binary.AppendUvarint(b, uint64(len(value)))
		b = append(b, value...)
	}
	if prev == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return append(b, prev...)
}

// rawEntry is a parsed history entry whose slices point into the encoded bytes.
type rawEntry struct {
	typ   EventType
	key   []byte
	value []byte
	prev  []byte // history key of the previous entry; nil if none
}

// parseEntry parses the history entry b of revision rev, checking every length and field.
func parseEntry(rev int64, b []byte) (rawEntry, error) {
	var e rawEntry
	var rest []byte
	var err error
	if e.typ, e.key, e.value, rest, err = parseHead(entryVersion, rev, b); err != nil {
		return e, fmt.Errorf("corrupt entry: %w", err)
	}
	switch {
	case len(rest) == 1 && rest[0] == 0:
		if e.typ == Delete {
			return e, errors.New("corrupt entry: delete without a previous entry")
		}
	case len(rest) == 1+historyKeyLen && rest[0] == 1:
		e.prev = rest[1:]
		if pr, err := parseHistoryKey(e.prev); err != nil || pr >= rev {
			return e, fmt.Errorf("corrupt entry: previous entry not in revisions [1, %d)", rev)
		}
	default:
		return e, fmt.Errorf("corrupt entry: %d bytes after the value, want a previous entry", len(rest))
	}
	return e, nil
}

// parseHead parses the start that history values of every format share, version(1) type(1)
// uvarint(len key) key [Put: uvarint(len value) value], and returns the rest.
func parseHead(version byte, rev int64, b []byte) (typ EventType, key, value, rest []byte, err error) {
	if rev <= 0 {
		return 0, nil, nil, nil, fmt.Errorf("revision %d", rev)
	}
	if len(b) < 2 || b[0] != version {
		return 0, nil, nil, nil, errors.New("bad header")
	}
	typ = EventType(b[1])
	if typ != Put && typ != Delete {
		return 0, nil, nil, nil, fmt.Errorf("type %d", b[1])
	}
	if key, rest, err = lengthPrefixed(b[2:], MaxKeyLen); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("key: %w", err)
	}
	if len(key) == 0 {
		return 0, nil, nil, nil, errors.New("empty key")
	}
	if typ == Put {
		if value, rest, err = lengthPrefixed(rest, MaxValueLen); err != nil {
			return 0, nil, nil, nil, fmt.Errorf("value: %w", err)
		}
	}
	return typ, key, value, rest, nil
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
