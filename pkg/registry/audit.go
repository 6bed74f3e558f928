package registry

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

// AuditRecord is one entry of the append-only audit log. Hash is a MAC tag (seal.Keyring.MAC,
// purpose "audit", hex) over the previous record's hash and this record's JSON with Hash empty,
// so editing, removing or reordering any record breaks the chain from there on, and only a
// holder of the key file can compute a chain that verifies.
type AuditRecord struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Reason string    `json:"reason,omitempty"`
	Prev   string    `json:"prev"`
	Hash   string    `json:"hash"`
}

// auditHead is the last record's seq and hash.
type auditHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// genesis is the prev of the first record.
var genesis = hex.EncodeToString(make([]byte, 32))

func auditKey(seq int64) string { return fmt.Sprintf("%s%020d", prefixAudit, seq) }

// chainInput is what a record's hash covers: the previous hash and the record with Hash empty.
func chainInput(r AuditRecord) []byte {
	r.Hash = ""
	b, _ := json.Marshal(r)
	return append(append([]byte(r.Prev), '\n'), b...)
}

// chainHash computes a record's hash under the primary key (Hash ignored).
func chainHash(k Sealer, r AuditRecord) (string, error) {
	tag, err := k.MAC(macAudit, chainInput(r))
	if err != nil {
		return "", fmt.Errorf("audit record %d: %w", r.Seq, err)
	}
	return hex.EncodeToString(tag), nil
}

// checkChainHash verifies a record's hash under the key it names.
func checkChainHash(k Sealer, r AuditRecord) error {
	tag, err := hex.DecodeString(r.Hash)
	if err != nil {
		return fmt.Errorf("hash is not hex")
	}
	return k.CheckMAC(macAudit, chainInput(r), tag)
}

// audit appends a record in the caller's transaction.
func (x *txn) audit(now time.Time, actor, action, target, reason string) error {
	return appendAudit(x.Txn, x.s.sealer, now, actor, action, target, reason)
}

// appendAudit appends a record in t, keyed with k.
func appendAudit(t kv.Txn, k Sealer, now time.Time, actor, action, target, reason string) error {
	x := &txn{Txn: t}
	head := auditHead{Hash: genesis}
	if err := x.getJSON(keyAuditHead, &head); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("read audit head: %w", err)
	}
	r := AuditRecord{Seq: head.Seq + 1, Time: now.UTC(), Actor: actor, Action: action, Target: target,
		Reason: cleanReason(reason), Prev: head.Hash}
	var err error
	if r.Hash, err = chainHash(k, r); err != nil {
		return err
	}
	if err := x.putJSON(auditKey(r.Seq), r); err != nil {
		return err
	}
	return x.putJSON(keyAuditHead, auditHead{Seq: r.Seq, Hash: r.Hash})
}

// errStop ends a Range early.
var errStop = errors.New("stop")

// Audit returns up to limit audit records after seq.
func (s *Server) Audit(ctx context.Context, after int64, limit int) ([]AuditRecord, error) {
	out := []AuditRecord{}
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		err := tx.Range(prefixAudit, func(kvp kv.KeyValue) error {
			seq, err := strconv.ParseInt(kvp.Key[len(prefixAudit):], 10, 64)
			if err != nil || seq <= after {
				return nil
			}
			var r AuditRecord
			if err := json.Unmarshal(kvp.Value, &r); err != nil {
				return fmt.Errorf("decode %s: %w", kvp.Key, err)
			}
			out = append(out, r)
			if len(out) >= limit {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	})
	return out, err
}

// VerifyAudit walks the whole chain: sequence numbers without gaps, each prev the hash before,
// each hash recomputed, and the head naming the last record.
func (s *Server) VerifyAudit(ctx context.Context) (registryapi.AuditCheck, error) {
	var v registryapi.AuditCheck
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		prev, seq := genesis, int64(0)
		anchors := s.nodeAnchors()
		v.Anchors = anchors.count()
		fail := func(at int64, format string, args ...any) error {
			v.BadSeq, v.Error = at, fmt.Sprintf(format, args...)
			return errStop
		}
		err := tx.Range(prefixAudit, func(kvp kv.KeyValue) error {
			seq++
			var r AuditRecord
			if err := json.Unmarshal(kvp.Value, &r); err != nil {
				return fail(seq, "record %s does not decode", kvp.Key)
			}
			anchors.see(r)
			switch {
			case kvp.Key != auditKey(seq) || r.Seq != seq:
				return fail(seq, "record %s: expected sequence number %d", kvp.Key, seq)
			case r.Prev != prev:
				return fail(seq, "record %d: prev does not match the hash of record %d", seq, seq-1)
			case checkChainHash(s.sealer, r) != nil:
				return fail(seq, "record %d: hash does not match its content under the key file (%v)", seq, checkChainHash(s.sealer, r))
			}
			prev = r.Hash
			v.Records = seq
			return nil
		})
		if errors.Is(err, errStop) {
			anchors.report(&v, false)
			return nil
		}
		if err != nil {
			return err
		}
		if anchors.report(&v, true) {
			return nil
		}
		var head auditHead
		if err := (&txn{Txn: tx}).getJSON(keyAuditHead, &head); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		if head.Seq != v.Records || (v.Records > 0 && head.Hash != prev) {
			v.BadSeq, v.Error = v.Records, fmt.Sprintf("the head names record %d, the chain ends at %d", head.Seq, v.Records)
			return nil
		}
		v.OK, v.Head = true, head.Hash
		return nil
	})
	return v, err
}
