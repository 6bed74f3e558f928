package nodesync

import (
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// keepAnchor keeps a bookmark's audit head in tokens.db when it is later than the one kept, so
// the registry's audit chain has a witness outside its store; the ack reports it back
// (docs/etcd.md, "A store that is not trusted"). Only a lock timeout is an error; the anchor is
// a witness, not a condition of logins, so any other failure is logged and sync goes on.
func (s *Syncer) keepAnchor(bm *syncframe.Frame, m store.Meta) (store.Meta, error) {
	if !bm.Audit.Newer(m.Audit) {
		return m, nil
	}
	kept, err := s.tokens.KeepAnchor(*bm.Audit)
	if err != nil {
		if store.IsLockTimeout(err) {
			return m, err
		}
		s.log.Warn("cannot keep the registry's audit head in tokens.db", "seq", bm.Audit.Seq, "err", err)
		return m, nil
	}
	m.Audit = kept.Audit
	return m, nil
}
