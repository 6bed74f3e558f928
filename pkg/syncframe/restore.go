package syncframe

import (
	"fmt"
	"math/big"
)

// ParseDigest restores a digest that was kept as its count and String form (a node stores them in
// its meta record), so that changes can be added and removed from there in O(1).
func ParseDigest(count int64, digest string) (*Digest, error) {
	b, err := parseDigest(digest)
	if err != nil {
		return nil, fmt.Errorf("digest %q: %v: %w", clip(digest), err, ErrFrame)
	}
	if count < 0 {
		return nil, fmt.Errorf("digest count %d: %w", count, ErrFrame)
	}
	d := &Digest{count: count}
	d.sum.Set(new(big.Int).SetBytes(b))
	return d, nil
}
