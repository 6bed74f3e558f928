package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// Anchors: every bookmark carries the audit head (seq and keyed hash); nodes keep the highest
// in tokens.db and report it in their acks; VerifyAudit fails, naming the nodes, when the chain
// does not contain a head a node reported. docs/etcd.md says what this protects against.

// setAudit advances the announced head; an older one changes nothing.
func (x *index) setAudit(a syncframe.Anchor) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if a.Newer(x.audit) {
		x.audit = &a
	}
}

// anchor is the head bookmarks announce (nil before the first audit record).
func (x *index) anchor() *syncframe.Anchor {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.audit
}

// advanceAnchor takes an audit record written to the store as the new head when its hash
// verifies under the keyring: a record forged by a store writer is never announced.
func (s *Server) advanceAnchor(key string, raw []byte) {
	var r AuditRecord
	if err := json.Unmarshal(raw, &r); err != nil || auditKey(r.Seq) != key {
		s.log.Error("audit record in the store does not decode: not announced", "key", key)
		return
	}
	if err := checkChainHash(s.sealer, r); err != nil {
		s.log.Error("audit record in the store fails authentication: not announced", "key", key, "err", err)
		return
	}
	s.idx.setAudit(syncframe.Anchor{Seq: r.Seq, Hash: r.Hash})
}

// readAnchor reads the audit head at start.
func (s *Server) readAnchor(ctx context.Context) error {
	return s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		var head auditHead
		if err := (&txn{Txn: tx}).getJSON(keyAuditHead, &head); err != nil {
			return ignoreNotFound(err)
		}
		kvp, err := tx.Get(auditKey(head.Seq))
		if errors.Is(err, kv.ErrNotFound) {
			s.log.Error("the audit head names a record that is not in the store", "seq", head.Seq)
			return nil
		}
		if err != nil {
			return err
		}
		s.advanceAnchor(kvp.Key, kvp.Value)
		return nil
	})
}

// nodeAnchor is one node's reported head.
type nodeAnchor struct {
	node string
	hash string
}

// anchorCheck compares the chain with the heads nodes reported.
type anchorCheck struct {
	want map[int64][]nodeAnchor
	bad  []string
	last int64 // the highest seq seen in the chain
}

// nodeAnchors collects the heads the nodes reported to this process.
func (s *Server) nodeAnchors() *anchorCheck {
	c := &anchorCheck{want: map[int64][]nodeAnchor{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, a := range s.acks {
		if a.Audit != nil {
			c.want[a.Audit.Seq] = append(c.want[a.Audit.Seq], nodeAnchor{node: name, hash: a.Audit.Hash})
		}
	}
	return c
}

func (c *anchorCheck) count() int {
	n := 0
	for _, l := range c.want {
		n += len(l)
	}
	return n
}

// see checks a chain record against the heads reported at its seq.
func (c *anchorCheck) see(r AuditRecord) {
	c.last = max(c.last, r.Seq)
	for _, a := range c.want[r.Seq] {
		if !strings.EqualFold(a.hash, r.Hash) {
			c.bad = append(c.bad, a.node)
		}
	}
	delete(c.want, r.Seq)
}

// report fails v naming the nodes whose head the chain does not contain; complete says the walk
// reached the chain's end, so heads beyond it are missing (a truncation). It returns whether v
// failed because of anchors.
func (c *anchorCheck) report(v *registryapi.AuditCheck, complete bool) bool {
	if complete {
		for seq, l := range c.want {
			if seq > c.last {
				for _, a := range l {
					c.bad = append(c.bad, a.node)
				}
			}
		}
	}
	if len(c.bad) == 0 {
		return false
	}
	slices.Sort(c.bad)
	v.Nodes = slices.Compact(c.bad)
	msg := fmt.Sprintf("the chain does not contain the audit head that node(s) %s saw: truncated or rewritten after they saw it",
		strings.Join(v.Nodes, ", "))
	if v.Error != "" {
		msg = v.Error + "; " + msg
	}
	v.OK, v.Error = false, msg
	return true
}
