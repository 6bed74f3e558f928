package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// State is a node's state.db: what logins change. Like Tokens, it is opened per transaction,
// unless it comes from a Resident (resident.go).
type State struct {
	opts Options
	h    *handle // Resident's; nil: per transaction
}

// NewState returns the state.db of the store described by o.
func NewState(o Options) *State { return &State{opts: o} }

// Path is the file's path.
func (s *State) Path() string { return filepath.Join(s.opts.Dir, StateFile) }

var (
	bucketSteps      = []byte("steps")       // user\x00token -> last accepted step
	bucketFailures   = []byte("failures")    // user -> Failures
	bucketBackupUsed = []byte("backup_used") // user\x00code -> time used
	bucketGrace      = []byte("grace")       // user\x00kind\x00key -> expiry (unix nanoseconds)
)

// View runs fn in a read-only transaction. A state.db that does not exist yet reads as empty (no
// login has changed anything), unlike tokens.db.
func (s *State) View(fn func(*StateTx) error) (err error) {
	if _, statErr := os.Lstat(s.Path()); errors.Is(statErr, fs.ErrNotExist) {
		if err := s.checkDir(); err != nil {
			return err
		}
		return fn(&StateTx{})
	}
	if s.h != nil {
		err := s.h.view(errNoState, func(tx *bolt.Tx) error { return fn(&StateTx{tx: tx}) })
		if errors.Is(err, errNoState) { // removed since the Lstat above
			if err := s.checkDir(); err != nil {
				return err
			}
			return fn(&StateTx{})
		}
		return err
	}
	db, err := open(s.opts.Dir, StateFile, true, false, s.opts.timeout())
	if err != nil {
		return err
	}
	defer db.Close()
	defer guard(s.Path(), &err)
	return db.View(func(tx *bolt.Tx) error { return fn(&StateTx{tx: tx}) })
}

// Update runs fn in a read-write transaction, creating state.db (0600) when it is missing.
func (s *State) Update(fn func(*StateTx) error) (err error) {
	if s.h != nil {
		return s.h.update(func() error { return ensure(s.opts.Dir, StateFile, s.opts.timeout(), initState) },
			func(tx *bolt.Tx) error { return s.run(tx, fn) })
	}
	if err := ensure(s.opts.Dir, StateFile, s.opts.timeout(), initState); err != nil {
		return err
	}
	db, err := open(s.opts.Dir, StateFile, false, false, s.opts.timeout())
	if err != nil {
		return err
	}
	defer db.Close()
	defer guard(s.Path(), &err)
	return db.Update(func(tx *bolt.Tx) error { return s.run(tx, fn) })
}

// run checks the buckets and runs fn in the write transaction tx.
func (s *State) run(tx *bolt.Tx, fn func(*StateTx) error) error {
	for _, b := range stateBuckets {
		if tx.Bucket(b) == nil {
			return fmt.Errorf("%s: bucket %s missing: %w", s.Path(), b, ErrSchema)
		}
	}
	return fn(&StateTx{tx: tx})
}

// errNoState: state.db went away under a kept handle's View; it reads as empty.
var errNoState = errors.New("no state.db")

var stateBuckets = [][]byte{bucketSteps, bucketFailures, bucketBackupUsed, bucketGrace}

func initState(tx *bolt.Tx) error {
	for _, b := range stateBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// checkDir is the directory check open does, so a View of a missing file still refuses an
// unsafe directory.
func (s *State) checkDir() error {
	if err := securefile.CheckDir(s.opts.Dir, securefile.SecretDir); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	return nil
}

// StateTx is one transaction on state.db. A zero StateTx is an empty, read-only state.
type StateTx struct {
	tx *bolt.Tx
}

func (x *StateTx) bucket(name []byte) *bolt.Bucket {
	if x.tx == nil {
		return nil
	}
	return x.tx.Bucket(name)
}

// LastStep returns the last accepted time step of a token (0 when none).
func (x *StateTx) LastStep(user, id string) uint64 {
	b := x.bucket(bucketSteps)
	if b == nil {
		return 0
	}
	v, _ := strconv.ParseUint(string(b.Get(userKey(user, id))), 10, 64)
	return v
}

// SetLastStep records the last accepted time step of a token.
func (x *StateTx) SetLastStep(user, id string, step uint64) error {
	return x.tx.Bucket(bucketSteps).Put(userKey(user, id), uint64Bytes(step))
}

// Failures is a user's failure record (the rule is token.Limits).
type Failures = token.Failures

// Failures returns the user's failure record (zero when none).
func (x *StateTx) Failures(user string) Failures {
	var f Failures
	if b := x.bucket(bucketFailures); b != nil {
		if v := b.Get([]byte(user)); v != nil {
			if json.Unmarshal(v, &f) != nil {
				// An unreadable record must not unlock anyone: treat it as a long back-off.
				f = Failures{Count: 1 << 20, Until: time.Unix(1<<40, 0)}
			}
		}
	}
	return f
}

// SetFailures replaces the user's failure record.
func (x *StateTx) SetFailures(user string, f Failures) error {
	return x.tx.Bucket(bucketFailures).Put([]byte(user), encode(f))
}

// ClearFailures forgets the user's failures (after a success, or an admin unlock).
func (x *StateTx) ClearFailures(user string) error {
	return x.tx.Bucket(bucketFailures).Delete([]byte(user))
}

// BackupUsed reports whether the backup code id of user has been used.
func (x *StateTx) BackupUsed(user, id string) bool {
	b := x.bucket(bucketBackupUsed)
	return b != nil && b.Get(userKey(user, id)) != nil
}

// UseBackup marks a backup code as used.
func (x *StateTx) UseBackup(user, id string, at time.Time) error {
	return x.tx.Bucket(bucketBackupUsed).Put(userKey(user, id), []byte(at.UTC().Format(time.RFC3339)))
}

func graceKey(user, kind, key string) []byte {
	return append(append(append(userPrefix(user), kind...), 0), key...)
}

// Grace reports whether a grace record (kind "ssh" or "sudo", key a digest) is valid at now.
func (x *StateTx) Grace(user, kind, key string, now time.Time) bool {
	b := x.bucket(bucketGrace)
	if b == nil {
		return false
	}
	v, err := strconv.ParseInt(string(b.Get(graceKey(user, kind, key))), 10, 64)
	return err == nil && now.UnixNano() < v
}

// SetGrace stores a grace record until the given time, and drops the user's expired records.
func (x *StateTx) SetGrace(user, kind, key string, until, now time.Time) error {
	b := x.tx.Bucket(bucketGrace)
	c := b.Cursor()
	prefix := userPrefix(user)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		if exp, err := strconv.ParseInt(string(v), 10, 64); err != nil || exp <= now.UnixNano() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return b.Put(graceKey(user, kind, key), []byte(strconv.FormatInt(until.UnixNano(), 10)))
}

// ResetUser forgets everything logins recorded for the user: failures, grace, used backup codes
// and last steps. Used when an admin resets or removes a user.
func (x *StateTx) ResetUser(user string) error {
	if err := x.ClearFailures(user); err != nil {
		return err
	}
	for _, name := range [][]byte{bucketSteps, bucketBackupUsed, bucketGrace} {
		if err := deletePrefix(x.tx.Bucket(name), userPrefix(user)); err != nil {
			return err
		}
	}
	return nil
}

// ForgetBackupUsed drops the used marks of a user's backup codes (when they are replaced).
func (x *StateTx) ForgetBackupUsed(user string) error {
	return deletePrefix(x.tx.Bucket(bucketBackupUsed), userPrefix(user))
}
