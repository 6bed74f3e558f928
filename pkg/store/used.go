package store

import (
	"bytes"
	"time"
)

// What totp-syncd needs to make backup codes and passcodes single-use across the cluster: the
// used marks that logins wrote to state.db, and whether tokens.db still holds the code, so that a
// use is reported to the registry until the registry's delete has arrived.

// ForEachBackupUsed calls fn for every used mark in state.db, in key order (user, then id), with
// the time of use (zero when the mark does not parse). An empty state reads as no marks.
func (x *StateTx) ForEachBackupUsed(fn func(user, id string, at time.Time) error) error {
	b := x.bucket(bucketBackupUsed)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i <= 0 || i == len(k)-1 {
			return nil // not "user\x00id": nothing a login writes
		}
		at, err := time.Parse(time.RFC3339, string(v))
		if err != nil {
			at = time.Time{}
		}
		return fn(string(k[:i]), string(k[i+1:]), at)
	})
}

// HasBackupCode reports whether tokens.db holds the backup code (or passcode) id of user.
func (x *TokensTx) HasBackupCode(user, id string) bool {
	b := x.tx.Bucket(bucketBackup)
	return b != nil && b.Get(userKey(user, id)) != nil
}
