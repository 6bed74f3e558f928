package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// Resealer is what a rotation needs of the keyring: sealing, MACs, and telling which key a
// sealed record or a MAC tag names; *seal.Keyring is one.
type Resealer interface {
	Sealer
	Reseal(sealed, aad []byte) ([]byte, bool, error)
	MACKeyID(tag []byte) (string, error)
	PrimaryID() string
}

// resealChunk is how many records one revision of a rotation re-seals.
const resealChunk = 1000

// ResealReport says what Reseal did.
type ResealReport struct {
	Records   int // records looked at
	Resealed  int // records re-sealed or re-authenticated under the primary key
	Refused   int // records that fail authentication: left as they are, and still refused
	Revisions int
}

// Reseal walks every user, node, sealed record and unassigned hardware token and re-seals and re-authenticates those not
// under k's primary key, in chunks of resealChunk records, each one kv.Update (one revision) with
// an audit record by actor. Nodes see nothing: the values they receive do not change. A record
// that fails authentication is logged, counted and left alone: a rotation does not bless it.
// Refusals are logged with slog.Default.
func Reseal(ctx context.Context, st kv.Store, k Resealer, actor string, now func() time.Time) (ResealReport, error) {
	return reauthenticate(ctx, st, k, actor, "key.rotate", now, slog.Default(), false)
}

// reauthenticate is Reseal, its audit records named action; with legacy, records without a MAC (written before records were
// authenticated) are accepted and get one.
func reauthenticate(ctx context.Context, st kv.Store, k Resealer, actor, action string, now func() time.Time, log *slog.Logger, legacy bool) (ResealReport, error) {
	s := &Server{sealer: k, log: log} // for the record codecs of auth.go
	var rep ResealReport
	for _, prefix := range []string{prefixUser, prefixNode, prefixRec, prefixHardware} {
		after := prefix
		for {
			n, seen, bad, last := 0, 0, 0, after
			_, err := st.Update(ctx, func(t kv.Txn) error {
				n, seen, bad, last = 0, 0, 0, after
				err := t.Range(prefix, func(kvp kv.KeyValue) error {
					if kvp.Key <= after {
						return nil
					}
					if n >= resealChunk {
						return errStop
					}
					seen, last = seen+1, kvp.Key
					b, err := s.reauthRecord(k, prefix, kvp, legacy)
					if errors.Is(err, errBadRecord) {
						bad++
						return nil
					}
					if err != nil || b == nil {
						return err
					}
					n++
					return t.Put(kvp.Key, b)
				})
				if err != nil && !errors.Is(err, errStop) {
					return err
				}
				if n == 0 {
					return nil
				}
				return appendAudit(t, k, now(), actor, action, "records",
					fmt.Sprintf("%d records re-sealed and re-authenticated under the primary key", n))
			})
			if err != nil {
				return rep, fmt.Errorf("re-seal after %q: %w", after, err)
			}
			rep.Records += seen
			rep.Resealed += n
			rep.Refused += bad
			if n > 0 {
				rep.Revisions++
			}
			if last == after {
				break
			}
			after = last
		}
	}
	return rep, nil
}

// reauthRecord returns the new value of a record under the primary key, or nil if it already is.
func (s *Server) reauthRecord(k Resealer, prefix string, kvp kv.KeyValue, legacy bool) ([]byte, error) {
	underPrimary := func(tag []byte) bool { id, err := k.MACKeyID(tag); return err == nil && id == k.PrimaryID() }
	// accept authenticates a record, or with legacy takes one that has no MAC at all.
	accept := func(kind string, body any, mac []byte) error {
		if legacy && len(mac) == 0 {
			return nil
		}
		if err := checkRecord(k, kind, kvp.Key, body, mac); err != nil {
			refused(s.log, kvp.Key, err)
			return err
		}
		return nil
	}
	switch prefix {
	case prefixUser:
		var v storedUser
		if err := json.Unmarshal(kvp.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		if err := accept(kindUser, v.User, v.MAC); err != nil || underPrimary(v.MAC) {
			return nil, err
		}
		return encodeUser(k, v.User)
	case prefixNode:
		var v storedNode
		if err := json.Unmarshal(kvp.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		if err := accept(kindNode, v.nodeRecord, v.MAC); err != nil || underPrimary(v.MAC) {
			return nil, err
		}
		return encodeNode(k, v.nodeRecord)
	case prefixHardware:
		return resealHardware(k, kvp)
	}
	w, err := decodeWrapper(kvp.Value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kvp.Key, err)
	}
	mac := w.MAC
	w.MAC = nil
	if err := accept(kindSealed, w, mac); err != nil {
		return nil, err
	}
	sealed, changed, err := k.Reseal(w.Sealed, []byte(recKey(kvp.Key)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kvp.Key, err)
	}
	if !changed && underPrimary(mac) {
		return nil, nil
	}
	w.Sealed = sealed
	return wrap(k, recKey(kvp.Key), w)
}
