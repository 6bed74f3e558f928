package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// File names inside the store directory.
const (
	TokensFile = "tokens.db"
	StateFile  = "state.db"
)

// SchemaVersion is the layout of tokens.db this code reads and writes.
const SchemaVersion = 1

// Sentinel errors.
var (
	// ErrNoStore: tokens.db does not exist (never provisioned or never synced).
	ErrNoStore = errors.New("token store does not exist")
	// ErrSchema: tokens.db has no schema version or one this code does not know.
	ErrSchema = errors.New("token store has an unknown schema")
	// ErrNotFound: the user has no such token.
	ErrNotFound = errors.New("no such token")
	// ErrInvalid: a record fails validation and was not written (the same error as token's).
	ErrInvalid = token.ErrInvalid
)

// Meta describes the whole tokens.db.
type Meta struct {
	SchemaVersion int       `json:"schema_version"`
	Revision      uint64    `json:"revision"` // registry revision applied (0 standalone)
	Updated       time.Time `json:"updated"`  // last write by the authority
	Source        string    `json:"source"`   // "standalone" or the URL of the registry replica followed
	// Epoch is the identity of the registry store the revisions come from (docs/sync-protocol.md,
	// "The store's epoch"); "" standalone or from a registry that announces none.
	Epoch string `json:"epoch,omitempty"`
	// SourceSince is when Source last changed (a fail-over to another replica).
	SourceSince time.Time `json:"source_since,omitzero"`
	// Filled by totp-syncd: when the registry last answered, and the node's set as of Revision.
	LastContact time.Time `json:"last_contact,omitzero"`
	Count       int64     `json:"count,omitempty"`
	Digest      string    `json:"digest,omitempty"`
	// Audit is the highest audit head the registry announced (anchor.go).
	Audit *syncframe.Anchor `json:"audit,omitempty"`
}

var (
	bucketTokens = []byte("tokens")
	bucketBackup = []byte("backup_codes")
	bucketUsers  = []byte("users") // token.Enrolled marks; absent in files written before them
	bucketMeta   = []byte("meta")
	keyMeta      = []byte("meta")
	// recordBuckets hold the synced records, by kind (syncframe.Kind*).
	recordBuckets = map[byte][]byte{syncframe.KindToken: bucketTokens, syncframe.KindBackup: bucketBackup,
		syncframe.KindUser: bucketUsers}
)

// recordKey is the sync key of the record under k in the bucket of kind.
func recordKey(kind byte, k []byte) (string, error) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 || i == len(k)-1 {
		return "", fmt.Errorf("store key %q: %w", k, ErrSchema)
	}
	return syncframe.Key(kind, string(k[:i]), string(k[i+1:])), nil
}

// userKey is "user\x00id"; userPrefix is "user\x00".
func userKey(user, id string) []byte { return append(userPrefix(user), id...) }

func userPrefix(user string) []byte {
	b := make([]byte, 0, len(user)+1+16)
	return append(append(b, user...), 0)
}

// Options says where the store lives and how long an open may wait for a lock.
type Options struct {
	Dir     string
	Timeout time.Duration
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 3 * time.Second
	}
	return o.Timeout
}

// open opens one database file with the secure opener. create allows creating it (0600).
func open(dir, name string, readOnly, create bool, timeout time.Duration) (*bolt.DB, error) {
	db, _, err := openFile(dir, name, readOnly, create, timeout)
	return db, err
}

// openFile is open, and also returns the file bbolt uses (for a Resident's flock).
func openFile(dir, name string, readOnly, create bool, timeout time.Duration) (*bolt.DB, *os.File, error) {
	var file *os.File
	if err := securefile.CheckDir(dir, securefile.SecretDir); err != nil {
		return nil, nil, fmt.Errorf("store directory: %w", err)
	}
	path := filepath.Join(dir, name)
	opts := &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		OpenFile: func(p string, flag int, perm fs.FileMode) (*os.File, error) {
			if !create {
				flag &^= os.O_CREATE
			}
			f, err := securefile.Open(p, flag, 0o600, securefile.Rule{Forbidden: 0o077, What: name})
			if err != nil {
				return nil, err
			}
			// Take bbolt's lock ourselves, retrying every few milliseconds: bbolt's own retry
			// sleeps 50 ms, which under a burst of logins turns a 1 ms wait into 200 ms. bbolt's
			// flock on the same open file then succeeds at once.
			if err := lock(f, !readOnly, timeout); err != nil {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", p, err)
			}
			file = f
			return f, nil
		},
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && name == TokensFile {
			return nil, nil, fmt.Errorf("open %s: %w", path, ErrNoStore)
		}
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, file, nil
}

// ensure creates dir/name, when it is missing, as an initialised bbolt file, atomically: built
// under a temporary name and linked into place, so no reader ever opens a half-made file (a
// read-only open of an empty file fails, and would deny a login that raced the first write).
func ensure(dir, name string, timeout time.Duration, init func(*bolt.Tx) error) error {
	path := filepath.Join(dir, name)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // there (or unreadable: the open that follows says why)
	}
	if err := securefile.CheckDir(dir, securefile.SecretDir); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".new-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	db, err := open(dir, filepath.Base(tmp), false, false, timeout)
	if err != nil {
		return err
	}
	err = db.Update(init)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initialise %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// lock takes a flock on f (exclusive for writers, shared for readers) within timeout, polling
// with short sleeps that grow from 1 to 8 ms. It returns bolt.ErrTimeout, as bbolt would.
func lock(f *os.File, exclusive bool, timeout time.Duration) error {
	how := unix.LOCK_SH | unix.LOCK_NB
	if exclusive {
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 8*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), how)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return bberrors.ErrTimeout
		}
		time.Sleep(wait)
	}
}

// guard turns a panic inside bbolt (a corrupt page) into an error: a damaged store denies, it
// does not crash the caller.
func guard(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("read %s: corrupt database: %v", path, r)
	}
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are encoded
	}
	return b
}

func uint64Bytes(v uint64) []byte { return []byte(strconv.FormatUint(v, 10)) }

func hasPrefix(k, prefix []byte) bool { return bytes.HasPrefix(k, prefix) }
