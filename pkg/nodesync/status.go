package nodesync

import (
	"fmt"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// Status is what `totp-syncd status` reports, read from tokens.db's meta.
type Status struct {
	Registry    string    `json:"registry"`          // from the config: the replicas' URLs, ", " between
	Source      string    `json:"source"`            // from meta: the replica that last wrote tokens.db or was heard from
	SourceSince time.Time `json:"source_since"`      // from meta: since when the node follows Source
	Epoch       string    `json:"epoch"`             // from meta: the registry store's epoch
	Revision    uint64    `json:"applied_revision"`  // registry revision applied
	LastContact time.Time `json:"last_contact"`      // zero: never
	Staleness   float64   `json:"staleness_seconds"` // -1: never heard from
	Stale       bool      `json:"stale"`             // beyond max_offline (when set; never standalone)
	Count       int64     `json:"count"`             // records (tokens and backup codes)
	Digest      string    `json:"digest"`
	Updated     time.Time `json:"updated"`
	// With verify: the count and digest recomputed from every record (each key read back), and
	// whether they match meta's, the set last synced from the registry. A standalone node (no
	// [sync] registry) keeps no synced set in meta, so there is nothing to compare the records
	// with: Compared is false and VerifyOK says only that every record read back.
	Verified       bool   `json:"verified,omitempty"`
	VerifiedCount  int64  `json:"verified_count,omitempty"`
	VerifiedDigest string `json:"verified_digest,omitempty"`
	Compared       bool   `json:"compared,omitempty"`
	VerifyOK       bool   `json:"verify_ok,omitempty"`
	// Unreported counts the login events (claims made without the registry, wrong codes) that
	// state.db's outbox still holds for the registry; -1 when state.db cannot be read.
	Unreported int `json:"unreported_login_events"`
}

// Unreported counts the login events state.db's outbox holds for the registry.
func Unreported(cfg *config.Config) (int, error) {
	n := 0
	err := store.NewState(store.Options{Dir: cfg.Store.Dir, Timeout: cfg.Store.OpenTimeout}).View(func(x *store.StateTx) error {
		n = x.OutboxLen()
		return nil
	})
	return n, err
}

// ReadStatus reads the node's sync status. verify recomputes the digest from every record and,
// on a node following a registry, compares it with meta's.
func ReadStatus(cfg *config.Config, verify bool, now time.Time) (Status, error) {
	db := store.NewTokens(store.Options{Dir: cfg.Store.Dir, Timeout: cfg.Store.OpenTimeout})
	st := Status{Registry: cfg.Sync.Registry.String(), Staleness: -1}
	var m store.Meta
	var err error
	if verify {
		var d *syncframe.Digest
		d, m, err = db.Digest()
		if err == nil {
			st.Verified, st.VerifiedCount, st.VerifiedDigest = true, d.Count(), d.String()
			st.Compared = len(cfg.Sync.Registry) > 0
			st.VerifyOK = !st.Compared || d.Matches(m.Count, m.Digest)
		}
	} else {
		m, err = db.Meta()
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", db.Path(), err)
	}
	st.Source, st.SourceSince, st.Epoch = m.Source, m.SourceSince, m.Epoch
	st.Revision, st.LastContact = m.Revision, m.LastContact
	st.Count, st.Digest, st.Updated = m.Count, m.Digest, m.Updated
	if !m.LastContact.IsZero() {
		st.Staleness = now.Sub(m.LastContact).Seconds()
	}
	if st.Unreported, err = Unreported(cfg); err != nil {
		st.Unreported = -1
	}
	if len(cfg.Sync.Registry) > 0 && cfg.Sync.MaxOffline > 0 { // as the helper: a standalone node is never stale
		st.Stale = m.LastContact.IsZero() || now.Sub(m.LastContact) > cfg.Sync.MaxOffline
	}
	return st, nil
}
