package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	bolt "go.etcd.io/bbolt"
)

// Tokens is a node's tokens.db. It holds no open handle: every View and Update opens the file,
// runs one transaction and closes it; except that one from a Resident reads through a kept
// read-only handle (resident.go).
type Tokens struct {
	opts Options
	h    *handle // Resident's; nil: per transaction
}

// NewTokens returns the tokens.db of the store described by o.
func NewTokens(o Options) *Tokens { return &Tokens{opts: o} }

// Path is the file's path.
func (t *Tokens) Path() string { return filepath.Join(t.opts.Dir, TokensFile) }

// View runs fn in a read-only transaction. A missing file is ErrNoStore; a file without a known
// schema is ErrSchema.
func (t *Tokens) View(fn func(*TokensTx) error) (err error) {
	if t.h != nil {
		return t.h.view(fmt.Errorf("open %s: %w", t.Path(), ErrNoStore), func(tx *bolt.Tx) error {
			x := &TokensTx{tx: tx}
			if err := x.checkSchema(); err != nil {
				return fmt.Errorf("%s: %w", t.Path(), err)
			}
			return fn(x)
		})
	}
	db, err := open(t.opts.Dir, TokensFile, true, false, t.opts.timeout())
	if err != nil {
		return err
	}
	defer db.Close()
	defer guard(t.Path(), &err)
	return db.View(func(tx *bolt.Tx) error {
		x := &TokensTx{tx: tx}
		if err := x.checkSchema(); err != nil {
			return fmt.Errorf("%s: %w", t.Path(), err)
		}
		return fn(x)
	})
}

// Update runs fn in a read-write transaction, creating the file (0600) and its schema when the
// file is new. Keep fn short: logins wait for the lock; bulk writers call Update per chunk.
func (t *Tokens) Update(fn func(*TokensTx) error) (err error) {
	if err := ensure(t.opts.Dir, TokensFile, t.opts.timeout(), initTokens); err != nil {
		return err
	}
	db, err := open(t.opts.Dir, TokensFile, false, false, t.opts.timeout())
	if err != nil {
		return err
	}
	defer db.Close()
	defer guard(t.Path(), &err)
	return db.Update(func(tx *bolt.Tx) error {
		x := &TokensTx{tx: tx}
		if err := x.checkSchema(); err != nil {
			return fmt.Errorf("%s: %w", t.Path(), err)
		}
		return fn(x)
	})
}

// initTokens lays out a new tokens.db: its buckets and a meta record with the schema version.
func initTokens(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketTokens, bucketBackup, bucketUsers, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return (&TokensTx{tx: tx}).SetMeta(Meta{SchemaVersion: SchemaVersion, Source: "standalone"})
}

// UserData is everything the login path needs of one user.
type UserData struct {
	Tokens   []token.Token
	Backup   []token.BackupCode
	Enrolled bool // see token.Enrolled
	// Shared is the user's failure record of the registry (a node that syncs; else zero).
	Shared token.SharedFailures
	Meta   Meta
}

// ReadUser reads one user's tokens and backup codes in one short read-only transaction.
func (t *Tokens) ReadUser(user string) (UserData, error) {
	var d UserData
	err := t.View(func(x *TokensTx) error {
		var err error
		if d.Meta, err = x.Meta(); err != nil {
			return err
		}
		if d.Tokens, err = x.UserTokens(user); err != nil {
			return err
		}
		d.Enrolled = x.Enrolled(user)
		if d.Shared, err = x.SharedFailures(user); err != nil {
			return err
		}
		d.Backup, err = x.BackupCodes(user)
		return err
	})
	return d, err
}

// TokensTx is one transaction on tokens.db.
type TokensTx struct {
	tx   *bolt.Tx
	meta *Meta // decoded once per transaction (checkSchema reads it first); SetMeta replaces it
}

func (x *TokensTx) checkSchema() error {
	m, err := x.Meta()
	if err != nil {
		return err
	}
	if m.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schema version %d, this build reads %d: %w", m.SchemaVersion, SchemaVersion, ErrSchema)
	}
	for _, b := range [][]byte{bucketTokens, bucketBackup} {
		if x.tx.Bucket(b) == nil {
			return fmt.Errorf("bucket %s missing: %w", b, ErrSchema)
		}
	}
	return nil
}

// Meta returns the store's meta record.
func (x *TokensTx) Meta() (Meta, error) {
	if x.meta != nil {
		return *x.meta, nil
	}
	var m Meta
	b := x.tx.Bucket(bucketMeta)
	if b == nil {
		return m, fmt.Errorf("no meta bucket: %w", ErrSchema)
	}
	v := b.Get(keyMeta)
	if v == nil {
		return m, fmt.Errorf("no meta record: %w", ErrSchema)
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, fmt.Errorf("meta record: %v: %w", err, ErrSchema)
	}
	x.meta = &m
	return m, nil
}

// SetMeta replaces the meta record.
func (x *TokensTx) SetMeta(m Meta) error {
	if err := x.tx.Bucket(bucketMeta).Put(keyMeta, encode(m)); err != nil {
		return err
	}
	x.meta = &m
	return nil
}

// UserTokens returns the user's tokens, sorted by id.
func (x *TokensTx) UserTokens(user string) ([]token.Token, error) {
	var out []token.Token
	err := scan(x.tx.Bucket(bucketTokens), userPrefix(user), func(k, v []byte) error {
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("token record %q: %w", k, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// Token returns one token.
func (x *TokensTx) Token(user, id string) (token.Token, error) {
	var t token.Token
	v := x.tx.Bucket(bucketTokens).Get(userKey(user, id))
	if v == nil {
		return t, fmt.Errorf("token %s of %s: %w", id, user, ErrNotFound)
	}
	if err := json.Unmarshal(v, &t); err != nil {
		return t, fmt.Errorf("token record %s of %s: %w", id, user, err)
	}
	return t, nil
}

// PutToken validates and writes a token (insert or replace). An active token clears its user's
// enrolled mark.
func (x *TokensTx) PutToken(t token.Token) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if b := x.tx.Bucket(bucketUsers); b != nil && t.State == token.Active {
		if err := b.Delete(userKey(t.User, syncframe.EnrolledID)); err != nil {
			return err
		}
	}
	return x.tx.Bucket(bucketTokens).Put(userKey(t.User, t.ID), encode(t))
}

// Enrolled says whether user carries the enrolled mark: they had a token, the last one was
// removed, and no DeleteUser (a reset) came since. Such a user is denied, never in enrollment
// grace.
func (x *TokensTx) Enrolled(user string) bool {
	b := x.tx.Bucket(bucketUsers)
	return b != nil && b.Get(userKey(user, syncframe.EnrolledID)) != nil
}

// DeleteToken removes a token; ErrNotFound if it is not there. Removing the user's last token
// that was not pending marks the user enrolled (token.Enrolled).
func (x *TokensTx) DeleteToken(user, id string) error {
	t, err := x.Token(user, id)
	if err != nil {
		return err
	}
	if err := x.tx.Bucket(bucketTokens).Delete(userKey(user, id)); err != nil {
		return err
	}
	left, err := x.UserTokens(user)
	if err != nil || t.State == token.Pending {
		return err
	}
	for _, o := range left {
		if o.State != token.Pending {
			return nil
		}
	}
	b, err := x.tx.CreateBucketIfNotExists(bucketUsers)
	if err != nil {
		return err
	}
	return b.Put(userKey(user, syncframe.EnrolledID), encode(token.Enrolled{User: user, Since: time.Now().UTC()}))
}

// BackupCodes returns the user's backup code hashes.
func (x *TokensTx) BackupCodes(user string) ([]token.BackupCode, error) {
	var out []token.BackupCode
	err := scan(x.tx.Bucket(bucketBackup), userPrefix(user), func(k, v []byte) error {
		var c token.BackupCode
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("backup code record %q: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// ReplaceBackupCodes drops the user's backup codes and stores codes instead.
func (x *TokensTx) ReplaceBackupCodes(user string, codes []token.BackupCode) error {
	b := x.tx.Bucket(bucketBackup)
	if err := deletePrefix(b, userPrefix(user)); err != nil {
		return err
	}
	for _, c := range codes {
		if c.User != user || c.ID == "" || len(c.Hash) == 0 || len(c.Salt) == 0 {
			return fmt.Errorf("backup code %q of %s: %w", c.ID, user, ErrInvalid)
		}
		if err := b.Put(userKey(user, c.ID), encode(c)); err != nil {
			return err
		}
	}
	return nil
}

// DeleteUser removes every token, backup code and the enrolled mark of the user.
func (x *TokensTx) DeleteUser(user string) error {
	if err := deletePrefix(x.tx.Bucket(bucketUsers), userPrefix(user)); err != nil {
		return err
	}
	if err := deletePrefix(x.tx.Bucket(bucketTokens), userPrefix(user)); err != nil {
		return err
	}
	return deletePrefix(x.tx.Bucket(bucketBackup), userPrefix(user))
}

// ForEachToken calls fn for every token, in key order (user, then id).
func (x *TokensTx) ForEachToken(fn func(token.Token) error) error {
	return x.tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("token record %q: %w", k, err)
		}
		return fn(t)
	})
}

// PendingUsers returns the users that have a pending token, each once. Only records that
// mention the pending state are decoded, so a sweep of a large store costs a read of it, not a
// decode of every token.
func (x *TokensTx) PendingUsers() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	err := x.forEachMarked([]byte(`"state":"`+string(token.Pending)+`"`), func(t token.Token) error {
		if t.State == token.Pending && !seen[t.User] {
			seen[t.User] = true
			out = append(out, t.User)
		}
		return nil
	})
	return out, err
}

// forEachMarked calls fn for every token whose record contains mark; only those are decoded.
func (x *TokensTx) forEachMarked(mark []byte, fn func(token.Token) error) error {
	return x.tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		if !bytes.Contains(v, mark) {
			return nil
		}
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("token record %q: %w", k, err)
		}
		return fn(t)
	})
}

// Users returns the names of all users that have tokens or backup codes, sorted.
func (x *TokensTx) Users() []string {
	seen := map[string]bool{}
	for _, name := range [][]byte{bucketTokens, bucketBackup} {
		_ = x.tx.Bucket(name).ForEach(func(k, _ []byte) error {
			for i, c := range k {
				if c == 0 {
					seen[string(k[:i])] = true
					break
				}
			}
			return nil
		})
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// scan calls fn for every key in b that starts with prefix. A nil bucket has no keys.
func scan(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}
