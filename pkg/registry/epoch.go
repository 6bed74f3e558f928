package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// keyEpoch holds the store's epoch: 32 hex digits, random, written once when a registry first
// opens the store (or when `totp-registry migrate` fills a new one). Revisions only mean something
// within one epoch, so the snapshot, every bookmark and the sync responses' headers announce it,
// and a node that meets another epoch resyncs (docs/sync-protocol.md, "The store's epoch").
const keyEpoch = "meta/epoch"

// newEpoch draws an epoch from rnd.
func newEpoch(rnd io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("draw a store epoch: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// checkEpoch checks a stored epoch's shape.
func checkEpoch(v []byte) (string, error) {
	if b, err := hex.DecodeString(string(v)); err != nil || len(b) != 16 {
		return "", fmt.Errorf("%s %q: want 32 hex digits", keyEpoch, clip(string(v)))
	}
	return string(v), nil
}

// ensureEpoch returns the store's epoch, creating it in one Update when the store has none (a new
// store, or one written before epochs). Replicas starting at once on one new etcd prefix agree:
// the Update read the key, so only one creation commits and the others read it on their retry.
func ensureEpoch(ctx context.Context, st kv.Store, rnd io.Reader) (epoch string, created bool, err error) {
	_, err = st.Update(ctx, func(tx kv.Txn) error {
		if _, err := tx.Get(keyMigrating); err == nil {
			return errors.New("the store is an unfinished `totp-registry migrate`: empty it and migrate again")
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		kvp, err := tx.Get(keyEpoch)
		if err == nil {
			created = false
			epoch, err = checkEpoch(kvp.Value)
			return err
		}
		if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		if epoch, err = newEpoch(rnd); err != nil {
			return err
		}
		created = true
		return tx.Put(keyEpoch, []byte(epoch))
	})
	if err != nil {
		return "", false, fmt.Errorf("store epoch: %w", err)
	}
	return epoch, created, nil
}
