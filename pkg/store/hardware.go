package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// bucketHardware holds the hardware tokens that no user holds yet (token.Hardware), by serial.
// It is created by the first import; the login path never reads it, so an unassigned token
// cannot log anyone in.
var bucketHardware = []byte("hardware")

// ErrNoHardware: no unassigned hardware token has the serial.
var ErrNoHardware = errors.New("no unassigned hardware token with this serial")

// Hardware returns the unassigned hardware token with the serial (ErrNoHardware if there is none).
func (x *TokensTx) Hardware(serial string) (token.Hardware, error) {
	var h token.Hardware
	b := x.tx.Bucket(bucketHardware)
	var v []byte
	if b != nil {
		v = b.Get([]byte(serial))
	}
	if v == nil {
		return h, fmt.Errorf("serial %s: %w", token.Clean(serial), ErrNoHardware)
	}
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("hardware token record %q: %w", serial, err)
	}
	return h, nil
}

// PutHardware validates and writes an unassigned hardware token (insert or replace).
func (x *TokensTx) PutHardware(h token.Hardware) error {
	if err := h.Validate(); err != nil {
		return err
	}
	b, err := x.tx.CreateBucketIfNotExists(bucketHardware)
	if err != nil {
		return err
	}
	return b.Put([]byte(h.Serial), encode(h))
}

// DeleteHardware removes an unassigned hardware token; ErrNoHardware if it is not there.
func (x *TokensTx) DeleteHardware(serial string) error {
	if _, err := x.Hardware(serial); err != nil {
		return err
	}
	return x.tx.Bucket(bucketHardware).Delete([]byte(serial))
}

// ForEachHardware calls fn for every unassigned hardware token, in serial order.
func (x *TokensTx) ForEachHardware(fn func(token.Hardware) error) error {
	b := x.tx.Bucket(bucketHardware)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		var h token.Hardware
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("hardware token record %q: %w", k, err)
		}
		return fn(h)
	})
}

// AssignedSerials returns the users' tokens that were assigned from hardware tokens, by serial.
// Only records that mention a serial are decoded.
func (x *TokensTx) AssignedSerials() (map[string]token.Token, error) {
	out := map[string]token.Token{}
	err := x.forEachMarked([]byte(`"serial":`), func(t token.Token) error {
		if t.Serial != "" {
			out[t.Serial] = t
		}
		return nil
	})
	return out, err
}

// DeletePending removes user's pending token id. A hardware token (one with a serial) goes back
// to the unassigned ones (Token.Unassign at now) instead of being lost with its seed: a pending
// token that expires or is cancelled must leave its device assignable again.
func (x *TokensTx) DeletePending(user, id string, now time.Time) error {
	t, err := x.Token(user, id)
	if err != nil {
		return err
	}
	if err := x.DeleteToken(user, id); err != nil {
		return err
	}
	if t.Serial != "" {
		return x.PutHardware(t.Unassign(now))
	}
	return nil
}
