package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// What totp-syncd needs of tokens.db (docs/sync-protocol.md, "Node behaviour"): records arrive
// keyed "t/USER/ID" or "b/USER/ID" with JSON values, and are stored as the exact bytes received
// under "user\x00id" in the tokens and backup_codes buckets, so the login path reads them like any
// other record and a digest recomputed from the file equals the registry's. Meta carries the
// applied revision, the record count and the digest, updated in the same transaction as the data.

// stagingPattern names the files a full resync is built in; writerLockFile serialises writers.
const (
	stagingPattern = "." + TokensFile + ".staging-*"
	writerLockFile = "." + TokensFile + ".writer.lock"
	// stagingChunk records per staging transaction: each commit stays short and bounded in memory.
	stagingChunk = 10000
)

// Sync sentinel errors.
var (
	// ErrStoreCheck: tokens.db's meta does not describe a synced set this code can continue
	// (no digest, a digest that does not parse); the caller resyncs.
	ErrStoreCheck = errors.New("token store fails its sync checks")
	// ErrWriterBusy: another process holds the writer lock (a second totp-syncd).
	ErrWriterBusy = errors.New("another writer holds the token store")
)

// Origin is where synced data comes from: the registry replica's URL, informational (replicas of
// one store are one source), and the store's epoch, which revisions are only meaningful within.
type Origin struct {
	Source string
	Epoch  string
}

// setOrigin records o in m, noting when the source changed.
func (m *Meta) setOrigin(o Origin, now time.Time) {
	if m.Source != o.Source || m.SourceSince.IsZero() {
		m.SourceSince = now.UTC()
	}
	m.Source, m.Epoch = o.Source, o.Epoch
}

// Change is one record change of a sync batch: a put when Value is non-nil, else a delete.
type Change struct {
	Key   string // "t/USER/ID" or "b/USER/ID"
	Value []byte // the value exactly as received; nil for a delete
}

// CheckRecord checks one synced record: the key parses, the value is a single JSON object that
// decodes into the key's kind with no unknown fields, validates, and names the key's user and id.
// It returns the bucket and the store key the record goes to.
func CheckRecord(key string, value []byte) (bucket, storeKey []byte, err error) {
	kind, user, id, err := syncframe.ParseKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	var gotUser, gotID string
	var t token.Token
	var c token.BackupCode
	var e token.Enrolled
	var f token.SharedFailures
	switch kind {
	case syncframe.KindToken:
		err = decodeStrict(value, &t)
		if err == nil {
			err = t.Validate()
		}
		gotUser, gotID = t.User, t.ID
	case syncframe.KindUser:
		if id == syncframe.FailuresID {
			err = decodeStrict(value, &f)
			if err == nil {
				err = f.Validate()
			}
			gotUser, gotID = f.User, syncframe.FailuresID
			break
		}
		err = decodeStrict(value, &e)
		if err == nil {
			err = e.Validate()
		}
		gotUser, gotID = e.User, syncframe.EnrolledID
	default:
		err = decodeStrict(value, &c)
		if err == nil {
			err = c.Validate()
		}
		gotUser, gotID = c.User, c.ID
	}
	bucket = recordBuckets[kind]
	if err != nil && !errors.Is(err, ErrInvalid) {
		err = fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("record %q: %w", clipKey(key), err)
	}
	if gotUser != user || gotID != id {
		return nil, nil, fmt.Errorf("record %q holds user %q id %q: %w", clipKey(key), clipKey(gotUser), clipKey(gotID), ErrInvalid)
	}
	return bucket, userKey(user, id), nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields and nothing after it.
func decodeStrict(value []byte, v any) error {
	if len(value) == 0 || value[0] != '{' {
		return errors.New("value is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func clipKey(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// metaDigest restores the digest kept in meta. A never-synced file with no records has an empty one.
func metaDigest(m Meta) (*syncframe.Digest, error) {
	if m.Digest == "" && m.Count == 0 {
		return &syncframe.Digest{}, nil
	}
	d, err := syncframe.ParseDigest(m.Count, m.Digest)
	if err != nil {
		return nil, fmt.Errorf("meta: %v: %w", err, ErrStoreCheck)
	}
	return d, nil
}

// writeTx opens the existing tokens.db read-write (never creating it: a node without one needs a
// snapshot, not an empty file) and runs fn in one transaction.
func (t *Tokens) writeTx(fn func(*TokensTx) error) (err error) {
	db, err := open(t.opts.Dir, TokensFile, false, false, t.opts.timeout())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", t.Path(), cerr)
		}
	}()
	defer guard(t.Path(), &err)
	return db.Update(func(tx *bolt.Tx) error {
		x := &TokensTx{tx: tx}
		if err := x.checkSchema(); err != nil {
			return fmt.Errorf("%s: %w", t.Path(), err)
		}
		return fn(x)
	})
}

// Meta reads tokens.db's meta record in a short read-only transaction.
func (t *Tokens) Meta() (Meta, error) {
	var m Meta
	err := t.View(func(x *TokensTx) error {
		var err error
		m, err = x.Meta()
		return err
	})
	return m, err
}

// Apply applies one complete batch of revision rev in one transaction, together with the meta
// record: the revision, count and digest (updated per change), last contact, update time and
// source. A batch at or below the applied revision is dropped (applied false): delivery is
// idempotent by revision. A batch of another epoch than the file's is refused (ErrStoreCheck):
// its revision means nothing here. Any invalid change fails the whole batch and leaves the file
// as it was.
func (t *Tokens) Apply(rev int64, changes []Change, o Origin, now time.Time) (m Meta, applied bool, err error) {
	if rev <= 0 {
		return m, false, fmt.Errorf("apply revision %d: %w", rev, ErrInvalid)
	}
	type write struct {
		bucket, key []byte
		change      Change
	}
	writes := make([]write, 0, len(changes))
	for _, c := range changes {
		var w write
		w.change = c
		if c.Value == nil {
			kind, user, id, err := syncframe.ParseKey(c.Key)
			if err != nil {
				return m, false, fmt.Errorf("delete: %v: %w", err, ErrInvalid)
			}
			w.bucket, w.key = recordBuckets[kind], userKey(user, id)
		} else if w.bucket, w.key, err = CheckRecord(c.Key, c.Value); err != nil {
			return m, false, err
		}
		writes = append(writes, w)
	}
	err = t.writeTx(func(x *TokensTx) error {
		var err error
		if m, err = x.Meta(); err != nil {
			return err
		}
		if uint64(rev) <= m.Revision {
			return nil
		}
		if m.Revision == 0 || m.Epoch != o.Epoch {
			return fmt.Errorf("revision %d of epoch %q, batch of epoch %q: %w", m.Revision, m.Epoch, o.Epoch, ErrStoreCheck)
		}
		d, err := metaDigest(m)
		if err != nil {
			return err
		}
		for _, w := range writes {
			b, err := x.tx.CreateBucketIfNotExists(w.bucket)
			if err != nil {
				return err
			}
			if old := b.Get(w.key); old != nil {
				d.Remove(w.change.Key, old)
			}
			if w.change.Value == nil {
				if err := b.Delete(w.key); err != nil {
					return err
				}
				continue
			}
			if err := b.Put(w.key, w.change.Value); err != nil {
				return err
			}
			d.Add(w.change.Key, w.change.Value)
		}
		m.Revision, m.Count, m.Digest = uint64(rev), d.Count(), d.String()
		m.LastContact, m.Updated = now.UTC(), now.UTC()
		m.setOrigin(o, now)
		applied = true
		return x.SetMeta(m)
	})
	if err != nil {
		return Meta{}, false, err
	}
	return m, applied, nil
}

// Touch records that the registry was heard from at lastContact, and that the set is unchanged up
// to revision rev (a bookmark the caller checked against meta); rev never moves backwards. It is
// one small write: callers rate-limit it (every few seconds at most). A non-empty source is the
// replica heard from (of the file's epoch, which the caller checked).
func (t *Tokens) Touch(rev int64, source string, lastContact time.Time) (Meta, error) {
	var m Meta
	err := t.writeTx(func(x *TokensTx) error {
		var err error
		if m, err = x.Meta(); err != nil {
			return err
		}
		if rev > 0 && uint64(rev) > m.Revision {
			m.Revision = uint64(rev)
		}
		if lastContact.After(m.LastContact) {
			m.LastContact = lastContact.UTC()
		}
		if source != "" {
			m.setOrigin(Origin{Source: source, Epoch: m.Epoch}, lastContact)
		}
		return x.SetMeta(m)
	})
	return m, err
}

// Digest recomputes the count and digest of the synced set from the records in the file (a full
// read: for tests and `totp-syncd status --verify`), and returns meta beside it.
func (t *Tokens) Digest() (*syncframe.Digest, Meta, error) {
	d := &syncframe.Digest{}
	var m Meta
	err := t.View(func(x *TokensTx) error {
		var err error
		if m, err = x.Meta(); err != nil {
			return err
		}
		for kind, name := range recordBuckets {
			err := scan(x.tx.Bucket(name), nil, func(k, v []byte) error {
				key, err := recordKey(kind, k)
				if err != nil {
					return err
				}
				d.Add(key, v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, Meta{}, err
	}
	return d, m, nil
}

// LockWriter takes an exclusive, non-blocking lock on a file beside tokens.db that every sync
// writer holds for its lifetime: a second totp-syncd on the node gets ErrWriterBusy instead of
// two daemons renaming files over each other. release drops it.
func (t *Tokens) LockWriter() (release func(), err error) {
	if err := securefile.CheckDir(t.opts.Dir, securefile.SecretDir); err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	path := filepath.Join(t.opts.Dir, writerLockFile)
	f, err := securefile.Open(path, os.O_RDWR|os.O_CREATE, 0o600, securefile.Rule{Forbidden: 0o077, What: "writer lock"})
	if err != nil {
		return nil, fmt.Errorf("writer lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("%s: %w", path, ErrWriterBusy)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// RemoveStaging removes staging files a killed resync left behind. Call it holding the writer
// lock, before the first build.
func (t *Tokens) RemoveStaging() (removed int, err error) {
	names, err := filepath.Glob(filepath.Join(t.opts.Dir, stagingPattern))
	if err != nil {
		return 0, err
	}
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("remove staging file: %w", err)
		}
		removed++
	}
	return removed, nil
}

// Staging builds a complete new tokens.db beside the old one for a full resync. Records go in
// with Put, in key order, a chunk per short transaction; Finish writes meta last, syncs the file
// and renames it over tokens.db in one step, so a login opens either the old complete file or the
// new one. Abort (or a kill) leaves tokens.db untouched; RemoveStaging clears the leftovers.
type Staging struct {
	t       *Tokens
	path    string
	db      *bolt.DB
	pending []stagedRecord
	digest  syncframe.Digest
	last    string
	done    bool
}

type stagedRecord struct {
	bucket, key, value []byte
}

// NewStaging creates an empty staging file (0600) in the store directory.
func (t *Tokens) NewStaging() (*Staging, error) {
	if err := securefile.CheckDir(t.opts.Dir, securefile.SecretDir); err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	f, err := os.CreateTemp(t.opts.Dir, stagingPattern)
	if err != nil {
		return nil, fmt.Errorf("create staging file: %w", err)
	}
	path := f.Name()
	f.Close()
	db, err := open(t.opts.Dir, filepath.Base(path), false, false, t.opts.timeout())
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	// One fsync at Finish instead of one per chunk: until the rename nobody depends on the file.
	db.NoSync = true
	if err := db.Update(initSynced); err != nil {
		db.Close()
		os.Remove(path)
		return nil, fmt.Errorf("initialise staging file: %w", err)
	}
	return &Staging{t: t, path: path, db: db, pending: make([]stagedRecord, 0, stagingChunk)}, nil
}

// initSynced lays out the buckets of a synced tokens.db; meta comes with Finish.
func initSynced(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketTokens, bucketBackup, bucketUsers, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Path is the staging file's path.
func (s *Staging) Path() string { return s.path }

// Put checks and adds one record. Keys must come in strictly increasing order (as a snapshot
// sends them); value is kept as received.
func (s *Staging) Put(key string, value []byte) error {
	if s.done {
		return errors.New("staging: put after finish or abort")
	}
	if key <= s.last {
		return fmt.Errorf("staging: key %q not after %q: %w", clipKey(key), clipKey(s.last), ErrInvalid)
	}
	bucket, k, err := CheckRecord(key, value)
	if err != nil {
		return err
	}
	s.last = key
	s.digest.Add(key, value)
	s.pending = append(s.pending, stagedRecord{bucket: bucket, key: k, value: bytes.Clone(value)})
	if len(s.pending) >= stagingChunk {
		return s.flush(nil)
	}
	return nil
}

// Count is the number of records put so far.
func (s *Staging) Count() int64 { return s.digest.Count() }

// flush writes the pending records, and meta when m is not nil, in one transaction.
func (s *Staging) flush(m *Meta) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range s.pending {
			b := tx.Bucket(r.bucket)
			b.FillPercent = 0.9 // mostly appends: fuller pages, fewer splits
			if err := b.Put(r.key, r.value); err != nil {
				return err
			}
		}
		if m != nil {
			return tx.Bucket(bucketMeta).Put(keyMeta, encode(*m))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write staging file %s: %w", s.path, err)
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	return nil
}

// Finish checks that what was put has count and digest, writes meta (revision rev, source, last
// contact now), syncs the file and renames it over tokens.db.
func (s *Staging) Finish(rev int64, count int64, digest string, o Origin, now time.Time) (Meta, error) {
	if s.done {
		return Meta{}, errors.New("staging: finish after finish or abort")
	}
	if rev <= 0 {
		s.Abort()
		return Meta{}, fmt.Errorf("staging: revision %d: %w", rev, ErrInvalid)
	}
	if !s.digest.Matches(count, digest) {
		s.Abort()
		return Meta{}, fmt.Errorf("staging: have %d records, digest %s; want %d, %s: %w",
			s.digest.Count(), s.digest.String(), count, digest, ErrInvalid)
	}
	m := Meta{SchemaVersion: SchemaVersion, Revision: uint64(rev), Updated: now.UTC(),
		LastContact: now.UTC(), Count: s.digest.Count(), Digest: s.digest.String()}
	m.Audit = s.t.keptAnchor() // a resync replaces the records, not what the node has seen
	m.setOrigin(o, now)
	err := s.flush(&m)
	if err == nil {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	s.done = true
	if err == nil {
		err = os.Rename(s.path, s.t.Path())
	}
	if err != nil {
		os.Remove(s.path)
		return Meta{}, fmt.Errorf("switch to staging file: %w", err)
	}
	if err := syncDir(s.t.opts.Dir); err != nil {
		return m, fmt.Errorf("switch to staging file: %w", err)
	}
	return m, nil
}

// Abort drops the staging file; tokens.db is untouched.
func (s *Staging) Abort() {
	if s.done {
		return
	}
	s.done = true
	s.db.Close()
	os.Remove(s.path)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// IsLockTimeout reports whether err is a timeout waiting for a database lock (a busy store, not a
// broken one: retry rather than resync).
func IsLockTimeout(err error) bool { return errors.Is(err, bberrors.ErrTimeout) }
