package syncframe

import (
	"encoding/hex"
	"fmt"
)

// maxAnchorHash bounds an anchor's hash: the hex of a MAC tag (header with a key id of at most 32
// bytes, and 32 bytes of HMAC).
const maxAnchorHash = 2 * (2 + 32 + 32)

// Anchor is the registry's audit head as a bookmark announces it: the last audit record's
// sequence number and hash (a keyed MAC, hex). Nodes keep the highest they saw outside the
// registry's store and report it back in their acks, so the registry can tell when its audit
// chain no longer contains a head a node has seen (docs/etcd.md).
type Anchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Validate checks an anchor's shape.
func (a *Anchor) Validate() error {
	if a.Seq <= 0 || a.Hash == "" || len(a.Hash) > maxAnchorHash {
		return fmt.Errorf("audit anchor: seq must be > 0, hash 1 to %d hex digits: %w", maxAnchorHash, ErrFrame)
	}
	if _, err := hex.DecodeString(a.Hash); err != nil {
		return fmt.Errorf("audit anchor: hash is not hex: %w", ErrFrame)
	}
	return nil
}

// Newer reports whether a is a later head than b (nil: none).
func (a *Anchor) Newer(b *Anchor) bool { return a != nil && (b == nil || a.Seq > b.Seq) }
