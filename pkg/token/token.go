package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// ErrInvalid: a record fails validation and was not written.
var ErrInvalid = errors.New("invalid record")

// State is the life cycle of a token: pending until its first code is verified.
type State string

// Token states.
const (
	Pending  State = "pending"
	Active   State = "active"
	Disabled State = "disabled"
)

// Token is one authenticator of one user.
type Token struct {
	User      string         `json:"user"`
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Algorithm totp.Algorithm `json:"algorithm"`
	Digits    int            `json:"digits"`
	Period    int            `json:"period"`
	Secret    []byte         `json:"secret"`
	State     State          `json:"state"`
	Created   time.Time      `json:"created"`
	LastUsed  time.Time      `json:"last_used,omitzero"`
	// UsedStep is the highest time step of this token already used where logins of this node do
	// not record it: at the registry, by the code that finished enrollment or served as a proof.
	// Logins accept only later steps, as if state.db held it (the replay rule across nodes).
	UsedStep uint64 `json:"used_step,omitempty"`
	// Serial is the serial of a hardware token assigned to the user (Hardware.Assign).
	Serial string `json:"serial,omitempty"`
}

// Params returns the token's TOTP parameters.
func (t *Token) Params() totp.Params {
	return totp.Params{Algorithm: t.Algorithm, Digits: t.Digits, Period: t.Period}
}

// Validate checks a token before it is written.
func (t *Token) Validate() error {
	if err := ValidUser(t.User); err != nil {
		return err
	}
	if t.ID == "" || len(t.ID) > 64 || !Printable(t.ID) {
		return fmt.Errorf("token id %q: %w", t.ID, ErrInvalid)
	}
	if len(t.Name) > 64 || !Printable(t.Name) {
		return fmt.Errorf("token name %q: 1 to 64 printable characters: %w", t.Name, ErrInvalid)
	}
	if err := t.Params().Validate(); err != nil {
		return fmt.Errorf("token %s: %v: %w", t.ID, err, ErrInvalid)
	}
	if len(t.Secret) < 10 || len(t.Secret) > 128 {
		return fmt.Errorf("token %s: secret of %d bytes, want 10 to 128: %w", t.ID, len(t.Secret), ErrInvalid)
	}
	if t.Serial != "" {
		if err := ValidSerial(t.Serial); err != nil {
			return err
		}
	}
	switch t.State {
	case Pending, Active, Disabled:
	default:
		return fmt.Errorf("token %s: state %q: %w", t.ID, t.State, ErrInvalid)
	}
	return nil
}

// BackupCode is one single-use backup code, stored as a salted hash (package backupcode). A
// temporary one-time passcode from the helpdesk is the same record with an expiry.
type BackupCode struct {
	User    string    `json:"user"`
	ID      string    `json:"id"`
	Salt    []byte    `json:"salt"`
	Hash    []byte    `json:"hash"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: never (backup codes); set: passcodes
}

// Expired reports whether the code can no longer be used at now.
func (c *BackupCode) Expired(now time.Time) bool {
	return !c.Expires.IsZero() && !now.Before(c.Expires)
}

// Validate checks a backup code (or one-time passcode) record before it is written.
func (c *BackupCode) Validate() error {
	if err := ValidUser(c.User); err != nil {
		return err
	}
	if c.ID == "" || len(c.ID) > 64 || !Printable(c.ID) {
		return fmt.Errorf("backup code id %q: %w", c.ID, ErrInvalid)
	}
	if len(c.Salt) == 0 || len(c.Salt) > 64 || len(c.Hash) == 0 || len(c.Hash) > 128 {
		return fmt.Errorf("backup code %s of %s: salt and hash of 1 to 64 and 1 to 128 bytes: %w", c.ID, c.User, ErrInvalid)
	}
	return nil
}

// ValidUser checks a user name as a key: non-empty, printable, no NUL, at most 256 bytes.
func ValidUser(u string) error {
	if u == "" || len(u) > 256 || !Printable(u) {
		return fmt.Errorf("user name %q: %w", u, ErrInvalid)
	}
	return nil
}

// Enrolled marks a user whose last token was removed: such a user is not in enrollment grace
// again, logins are denied, and a new first token needs an administrator's reset or a bootstrap
// code. Stores write the mark when they delete a user's last (not pending) token and remove it
// when they write an active token or reset the user.
type Enrolled struct {
	User  string    `json:"user"`
	Since time.Time `json:"since"`
}

// Validate checks the mark.
func (e *Enrolled) Validate() error { return ValidUser(e.User) }
