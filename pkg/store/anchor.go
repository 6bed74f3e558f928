package store

import "github.com/pam-totp/pam-totp/pkg/syncframe"

// KeepAnchor keeps a, the registry's audit head from a bookmark, in meta when it is later than
// the one kept (a lower one changes nothing: the node reports the highest it has seen), and
// returns meta.
func (t *Tokens) KeepAnchor(a syncframe.Anchor) (Meta, error) {
	var m Meta
	err := t.writeTx(func(x *TokensTx) error {
		var err error
		if m, err = x.Meta(); err != nil {
			return err
		}
		if !a.Newer(m.Audit) {
			return nil
		}
		m.Audit = &a
		return x.SetMeta(m)
	})
	return m, err
}

// keptAnchor is the anchor in the current tokens.db, or nil when there is none or the file
// cannot be read (a full resync then starts without one; the next bookmark brings it).
func (t *Tokens) keptAnchor() *syncframe.Anchor {
	m, err := t.Meta()
	if err != nil {
		return nil
	}
	return m.Audit
}
