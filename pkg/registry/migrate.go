package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// keyMigrating marks a store that `totp-registry migrate` is filling: written with the first
// keys, removed with the last together with the new epoch. A registry refuses to start on a store
// that has it (ensureEpoch), so a migration cut short is never served half copied.
const keyMigrating = "meta/migrating"

// Migration limits: keys and value bytes per target Update, well inside etcd's defaults
// (--max-txn-ops 128, --max-request-bytes 1.5 MiB).
const (
	migrateChunkKeys  = 100
	migrateChunkBytes = 512 << 10
)

// ErrTargetNotEmpty: Migrate copies only into an empty store.
var ErrTargetNotEmpty = errors.New("the target store is not empty")

// MigrateReport is what Migrate copied.
type MigrateReport struct {
	Keys      int            // keys copied
	ByKind    map[string]int // keys by their first path element: rec, user, node, audit, enroll, meta
	Revisions int            // Updates at the target
	FromEpoch string         // the source's epoch ("" if it had none)
	Epoch     string         // the target's new epoch
}

// Migrate copies every key of from into to, which must be empty, as they are: the sealed records,
// the audit chain and its head, nodes, enrollment state. The target gets a new epoch: its
// revisions are its own, so nodes resync once from it. The source must not change meanwhile (stop
// its registry); it is only read. Values are copied in one View of the source, then written in
// Updates of bounded size; if Migrate fails half way the target keeps keyMigrating, and no registry
// starts on it until it is emptied.
func Migrate(ctx context.Context, from, to kv.Store, rnd io.Reader) (MigrateReport, error) {
	rep := MigrateReport{ByKind: map[string]int{}}
	err := to.View(ctx, func(_ int64, tx kv.Txn) error {
		return tx.Range("", func(kvp kv.KeyValue) error {
			return fmt.Errorf("%w: it holds %q (a registry started on it, or another migration); empty it first", ErrTargetNotEmpty, clip(kvp.Key))
		})
	})
	if err != nil {
		return rep, err
	}
	var all []kv.KeyValue
	err = from.View(ctx, func(_ int64, tx kv.Txn) error {
		return tx.Range("", func(kvp kv.KeyValue) error {
			switch kvp.Key {
			case keyEpoch:
				rep.FromEpoch = string(kvp.Value)
				return nil
			case keyMigrating:
				return errors.New("the source store is an unfinished migration")
			}
			all = append(all, kv.KeyValue{Key: kvp.Key, Value: append([]byte(nil), kvp.Value...)})
			return nil
		})
	})
	if err != nil {
		return rep, fmt.Errorf("read the source store: %w", err)
	}
	if rep.Epoch, err = newEpoch(rnd); err != nil {
		return rep, err
	}
	for start := 0; start < len(all) || rep.Revisions == 0; {
		end, size := start, 0
		for end < len(all) && end-start < migrateChunkKeys && (end == start || size+len(all[end].Value) <= migrateChunkBytes) {
			size += len(all[end].Key) + len(all[end].Value)
			end++
		}
		first, last := rep.Revisions == 0, end == len(all)
		_, err := to.Update(ctx, func(tx kv.Txn) error {
			if first && !last {
				if err := tx.Put(keyMigrating, []byte(rep.Epoch)); err != nil {
					return err
				}
			}
			for _, kvp := range all[start:end] {
				if err := tx.Put(kvp.Key, kvp.Value); err != nil {
					return fmt.Errorf("%s: %w", clip(kvp.Key), err)
				}
			}
			if !last {
				return nil
			}
			if !first {
				if err := tx.Delete(keyMigrating); err != nil {
					return err
				}
			}
			return tx.Put(keyEpoch, []byte(rep.Epoch))
		})
		if err != nil {
			return rep, fmt.Errorf("write the target store (%d of %d keys written; empty it before trying again): %w", start, len(all), err)
		}
		rep.Revisions++
		for _, kvp := range all[start:end] {
			kind, _, _ := strings.Cut(kvp.Key, "/")
			rep.ByKind[kind]++
		}
		rep.Keys += end - start
		start = end
	}
	return rep, nil
}
