package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// MAC purposes (seal's HKDF labels): one for records, one for the audit chain.
const (
	macRecord = "record"
	macAudit  = "audit"
)

// errBadRecord: a record in the store fails authentication (no MAC, a wrong MAC, or one under a
// key the keyring does not have). It is refused wherever it is read.
var errBadRecord = errors.New("record fails authentication")

// Record kinds, bound into a record's MAC with its key.
const (
	kindUser      = "user"
	kindNode      = "node"
	kindSealed    = "sealed"
	kindBootstrap = "bootstrap"
)

// storedUser is the kv value of user/NAME: the user and its MAC.
type storedUser struct {
	User
	MAC []byte `json:"mac,omitempty"`
}

// storedNode is the kv value of node/NAME: the node and its MAC.
type storedNode struct {
	nodeRecord
	MAC []byte `json:"mac,omitempty"`
}

// storedCode is the kv value of enroll/boot/USER: a bootstrap code (hashed) and its MAC, so a
// store writer cannot plant a code of their choosing.
type storedCode struct {
	token.BackupCode
	MAC []byte `json:"mac,omitempty"`
}

// authInput is what a record's MAC covers: its full kv key, its kind and its decoded content
// (for a sealed record: the scopes and the sealed bytes). The MAC is over the content as it is
// used, re-encoded, so fields a writer adds are ignored, not trusted.
func authInput(kind, key string, body any) ([]byte, error) {
	return json.Marshal(struct {
		Kind string `json:"kind"`
		Key  string `json:"key"`
		Body any    `json:"body"`
	}{kind, key, body})
}

func recordMAC(k Sealer, kind, key string, body any) ([]byte, error) {
	msg, err := authInput(kind, key, body)
	if err != nil {
		return nil, err
	}
	tag, err := k.MAC(macRecord, msg)
	if err != nil {
		return nil, fmt.Errorf("authenticate %s: %w", key, err)
	}
	return tag, nil
}

func checkRecord(k Sealer, kind, key string, body any, tag []byte) error {
	if len(tag) == 0 {
		return fmt.Errorf("%s: %w: no MAC", key, errBadRecord)
	}
	msg, err := authInput(kind, key, body)
	if err != nil {
		return err
	}
	if err := k.CheckMAC(macRecord, msg, tag); err != nil {
		return fmt.Errorf("%s: %w: %w", key, errBadRecord, err)
	}
	return nil
}

// refused logs a record that failed authentication (the key, never the value).
func refused(log *slog.Logger, key string, err error) {
	if err != nil && errors.Is(err, errBadRecord) {
		log.Error("record in the store fails authentication: refused (written by someone without the key file?)", "key", key, "err", err)
	}
}

// encodeUser returns the authenticated kv value of a user.
func encodeUser(k Sealer, u User) ([]byte, error) {
	mac, err := recordMAC(k, kindUser, prefixUser+u.Name, u)
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedUser{User: u, MAC: mac})
}

// decodeUser decodes and authenticates the kv value of user key.
func (s *Server) decodeUser(key string, raw []byte) (User, error) {
	var v storedUser
	if err := json.Unmarshal(raw, &v); err != nil {
		return User{}, fmt.Errorf("decode %s: %w", key, err)
	}
	if err := s.checkNamed(kindUser, key, prefixUser+v.Name, v.User, v.MAC); err != nil {
		return User{}, err
	}
	return v.User, nil
}

// checkNamed authenticates a user or node record read at key, which must be the key its
// content names (want); a failure is logged.
func (s *Server) checkNamed(kind, key, want string, body any, mac []byte) error {
	err := checkRecord(s.sealer, kind, key, body, mac)
	if err == nil && want != key {
		err = fmt.Errorf("%s: %w: its content names %s", key, errBadRecord, clip(want))
	}
	refused(s.log, key, err)
	return err
}

// putUser writes a user, authenticated.
func (x *txn) putUser(u User) error {
	b, err := encodeUser(x.s.sealer, u)
	if err != nil {
		return err
	}
	return x.Put(prefixUser+u.Name, b)
}

// getUser reads and authenticates a user; kv.ErrNotFound if there is none.
func (x *txn) getUser(name string) (User, error) {
	kvp, err := x.Get(prefixUser + name)
	if err != nil {
		return User{}, err
	}
	return x.s.decodeUser(kvp.Key, kvp.Value)
}

// encodeNode returns the authenticated kv value of a node.
func encodeNode(k Sealer, n nodeRecord) ([]byte, error) {
	mac, err := recordMAC(k, kindNode, prefixNode+n.Name, n)
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedNode{nodeRecord: n, MAC: mac})
}

// decodeNode decodes and authenticates the kv value of node key.
func (s *Server) decodeNode(key string, raw []byte) (nodeRecord, error) {
	var v storedNode
	if err := json.Unmarshal(raw, &v); err != nil {
		return nodeRecord{}, fmt.Errorf("decode %s: %w", key, err)
	}
	if err := s.checkNamed(kindNode, key, prefixNode+v.Name, v.nodeRecord, v.MAC); err != nil {
		return nodeRecord{}, err
	}
	return v.nodeRecord, nil
}

// putNode writes a node, authenticated.
func (x *txn) putNode(n nodeRecord) error {
	b, err := encodeNode(x.s.sealer, n)
	if err != nil {
		return err
	}
	return x.Put(prefixNode+n.Name, b)
}

// getNode reads and authenticates a node; kv.ErrNotFound if there is none.
func (s *Server) getNode(tx kv.Txn, name string) (nodeRecord, error) {
	kvp, err := tx.Get(prefixNode + name)
	if err != nil {
		return nodeRecord{}, err
	}
	return s.decodeNode(kvp.Key, kvp.Value)
}

// wrap authenticates a sealed record's wrapper (its scopes and sealed bytes) under its sync key
// and encodes it.
func wrap(k Sealer, key string, w sealedRecord) ([]byte, error) {
	w.MAC = nil
	mac, err := recordMAC(k, kindSealed, prefixRec+key, w)
	if err != nil {
		return nil, err
	}
	w.MAC = mac
	return json.Marshal(w)
}

// unwrap decodes a sealed record's wrapper stored under the sync key and authenticates it,
// without opening the sealed value. A record that fails is logged and refused: it is served to
// no node and counted in no digest.
func (s *Server) unwrap(key string, raw []byte) (sealedRecord, error) {
	w, err := decodeWrapper(raw)
	if err != nil {
		return w, fmt.Errorf("%s: %w", key, err)
	}
	mac := w.MAC
	w.MAC = nil
	if err := checkRecord(s.sealer, kindSealed, prefixRec+key, w, mac); err != nil {
		refused(s.log, prefixRec+key, err)
		return sealedRecord{}, err
	}
	w.MAC = mac
	return w, nil
}

// isTag reports whether an audit hash is a MAC tag (keyed), not an unkeyed SHA-256.
func isTag(h string) bool { return len(h) != 2*sha256.Size }

// putBootstrap writes a user's bootstrap code, authenticated.
func (x *txn) putBootstrap(user string, c token.BackupCode) error {
	mac, err := recordMAC(x.s.sealer, kindBootstrap, prefixBoot+user, c)
	if err != nil {
		return err
	}
	return x.putJSON(prefixBoot+user, storedCode{BackupCode: c, MAC: mac})
}

// bootstrap reads a user's bootstrap code; one that fails authentication is logged and taken
// for none (the user asks for a new one).
func (x *txn) bootstrap(user string) (token.BackupCode, bool, error) {
	var v storedCode
	err := x.getJSON(prefixBoot+user, &v)
	if errors.Is(err, kv.ErrNotFound) {
		return token.BackupCode{}, false, nil
	}
	if err != nil {
		return token.BackupCode{}, false, err
	}
	if err := x.s.checkNamed(kindBootstrap, prefixBoot+user, prefixBoot+user, v.BackupCode, v.MAC); err != nil {
		return token.BackupCode{}, false, nil
	}
	return v.BackupCode, true, nil
}

// recKey is the sync key of a rec/ kv key.
func recKey(k string) string { return strings.TrimPrefix(k, prefixRec) }

// legacyChainHash is the unkeyed SHA-256 hash of the audit chain before it was keyed.
func legacyChainHash(r AuditRecord) string {
	sum := sha256.Sum256(chainInput(r))
	return hex.EncodeToString(sum[:])
}

// errLegacyStore: the store predates authenticated records.
var errLegacyStore = errors.New("the store was written before records were authenticated: " +
	"stop every registry and run \"totp-registry authenticate-store\" once (docs/etcd.md)")

// legacyStore reports whether st was written before records carried MACs: its first audit record
// has an unkeyed SHA-256 hash.
func legacyStore(ctx context.Context, st kv.Store) (bool, error) {
	legacy := false
	err := st.View(ctx, func(_ int64, tx kv.Txn) error {
		kvp, err := tx.Get(auditKey(1))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var r AuditRecord
		if err := json.Unmarshal(kvp.Value, &r); err != nil {
			return fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		legacy = !isTag(r.Hash)
		return nil
	})
	return legacy, err
}

// AuthenticateStore authenticates a store written before records carried MACs, once, by an
// administrator with the key file (totp-registry authenticate-store, every registry stopped):
// every record without a MAC gets one, then the whole audit chain is recomputed keyed, ending in
// a store.authenticate record. It trusts the store as it is at that moment; a registry never
// does this by itself, since a store writer could otherwise make a store look old and have
// forged records blessed at the next start. It returns what it did, or says there was nothing
// to do.
func AuthenticateStore(ctx context.Context, st kv.Store, k Resealer, now func() time.Time, log *slog.Logger) (string, error) {
	legacy, err := legacyStore(ctx, st)
	if err != nil {
		return "", err
	}
	if !legacy {
		return "the store's records are already authenticated: nothing to do", nil
	}
	s := &Server{store: st, sealer: k, log: log, now: now}
	rep, err := reauthenticate(ctx, st, k, "root (authenticate-store)", "store.authenticate", now, log, true)
	if err != nil {
		return "", fmt.Errorf("authenticate records: %w", err)
	}
	n, broken, err := s.rechain(ctx)
	if err != nil {
		return "", fmt.Errorf("key the audit chain: %w", err)
	}
	reason := fmt.Sprintf("%d records authenticated, %d refused; %d audit records keyed", rep.Resealed, rep.Refused, n)
	if broken > 0 {
		reason += fmt.Sprintf("; the unkeyed chain was already broken at record %d", broken)
		log.Error("audit chain: the unkeyed chain did not verify before it was keyed", "seq", broken)
	}
	if _, err := st.Update(ctx, func(t kv.Txn) error {
		return appendAudit(t, k, now(), "root (authenticate-store)", "store.authenticate", "records", reason)
	}); err != nil {
		return "", err
	}
	return reason, nil
}

// rechain recomputes every audit record's prev and hash keyed, in order, resealChunk records a
// revision. broken is the first record whose unkeyed hash did not verify (0: none).
func (s *Server) rechain(ctx context.Context) (n, broken int64, err error) {
	oldPrev, newPrev := genesis, genesis
	for {
		var recs []AuditRecord
		var endOld string
		_, err := s.store.Update(ctx, func(t kv.Txn) error {
			recs = recs[:0]
			for seq := n + 1; seq <= n+resealChunk; seq++ {
				kvp, err := t.Get(auditKey(seq))
				if errors.Is(err, kv.ErrNotFound) {
					break
				}
				if err != nil {
					return err
				}
				var r AuditRecord
				if err := json.Unmarshal(kvp.Value, &r); err != nil {
					return fmt.Errorf("decode %s: %w", kvp.Key, err)
				}
				recs = append(recs, r)
			}
			op, np := oldPrev, newPrev
			for i := range recs {
				r := &recs[i]
				if broken == 0 && (r.Prev != op || legacyChainHash(*r) != r.Hash) && !isTag(r.Hash) {
					broken = r.Seq
				}
				op, r.Prev = r.Hash, np
				h, err := chainHash(s.sealer, *r)
				if err != nil {
					return err
				}
				r.Hash, np = h, h
				if err := (&txn{Txn: t}).putJSON(auditKey(r.Seq), *r); err != nil {
					return err
				}
			}
			endOld = op
			if len(recs) == 0 {
				return nil
			}
			last := recs[len(recs)-1]
			return (&txn{Txn: t}).putJSON(keyAuditHead, auditHead{Seq: last.Seq, Hash: last.Hash})
		})
		if err != nil {
			return n, broken, err
		}
		if len(recs) == 0 {
			return n, broken, nil
		}
		// The next chunk starts from the old hash this one read and the new one it wrote.
		n += int64(len(recs))
		newPrev, oldPrev = recs[len(recs)-1].Hash, endOld
	}
}
