package token

import (
	"fmt"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// HardwareInfo is what listings show of a hardware token that no user holds yet: everything but
// its secret.
type HardwareInfo struct {
	Serial       string         `json:"serial"`
	Manufacturer string         `json:"manufacturer,omitempty"`
	Model        string         `json:"model,omitempty"`
	Algorithm    totp.Algorithm `json:"algorithm"`
	Digits       int            `json:"digits"`
	Period       int            `json:"period"`
	Imported     time.Time      `json:"imported"`
	// User is the user the vendor's file names, if any: a hint for the assignment, nothing more.
	User string `json:"user,omitempty"`
}

// Hardware is the seed of a hardware token that no user holds yet: imported from its vendor's
// PSKC file for its serial, and kept apart from users' tokens (no login reads it) until an
// administrator assigns it to a user (Assign).
type Hardware struct {
	HardwareInfo
	Secret []byte `json:"secret"`
}

// Info returns what listings show of h.
func (h *Hardware) Info() HardwareInfo { return h.HardwareInfo }

// Params returns the token's TOTP parameters.
func (h *Hardware) Params() totp.Params {
	return totp.Params{Algorithm: h.Algorithm, Digits: h.Digits, Period: h.Period}
}

// ValidSerial checks a hardware token's serial as a key: 1 to 64 printable characters, no spaces
// and no '/'.
func ValidSerial(s string) error {
	if s == "" || len(s) > 64 || !Printable(s) || strings.ContainsAny(s, " \t/\\") {
		return fmt.Errorf("serial %q: 1 to 64 printable characters without spaces or '/': %w", s, ErrInvalid)
	}
	return nil
}

// Validate checks an unassigned hardware token before it is written.
func (h *Hardware) Validate() error {
	if err := ValidSerial(h.Serial); err != nil {
		return err
	}
	if len(h.Manufacturer) > 128 || !Printable(h.Manufacturer) || len(h.Model) > 128 || !Printable(h.Model) {
		return fmt.Errorf("hardware token %s: manufacturer and model of at most 128 printable characters: %w", h.Serial, ErrInvalid)
	}
	if err := h.Params().Validate(); err != nil {
		return fmt.Errorf("hardware token %s: %v: %w", h.Serial, err, ErrInvalid)
	}
	if len(h.Secret) < totp.MinSecretLen || len(h.Secret) > totp.MaxSecretLen {
		return fmt.Errorf("hardware token %s: secret of %d bytes: %w", h.Serial, len(h.Secret), ErrInvalid)
	}
	if h.User != "" {
		return ValidUser(h.User)
	}
	return nil
}

// HardwareName is the name an assigned hardware token gets: "hardware SERIAL".
func HardwareName(serial string) string {
	name := "hardware " + serial
	if len(name) > MaxNameLen {
		name = name[:MaxNameLen]
	}
	return name
}

// Assign returns the token h becomes when it is assigned to user under id: pending, like every
// new token, until a code from the device is verified (Match); its serial stays on it, so that it
// can be unassigned again.
func (h *Hardware) Assign(user, id string, now time.Time) Token {
	return Token{User: user, ID: id, Name: HardwareName(h.Serial), Algorithm: h.Algorithm, Digits: h.Digits,
		Period: h.Period, Secret: h.Secret, State: Pending, Created: now.UTC().Truncate(time.Second), Serial: h.Serial}
}

// Unassign returns the unassigned hardware token that t, a token assigned from one (t.Serial is
// set), goes back to.
func (t *Token) Unassign(now time.Time) Hardware {
	return Hardware{HardwareInfo: HardwareInfo{Serial: t.Serial, Algorithm: t.Algorithm, Digits: t.Digits,
		Period: t.Period, Imported: now.UTC().Truncate(time.Second)}, Secret: t.Secret}
}
