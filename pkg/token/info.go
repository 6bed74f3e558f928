package token

import (
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Info is what listings show of a token: everything but its secret. It is the one listing type
// of totp-admin (standalone and --registry), the registry's admin API and its client; its JSON
// names are the wire's (docs/sync-protocol.md, the admin API).
type Info struct {
	User      string         `json:"user"`
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Algorithm totp.Algorithm `json:"algorithm"`
	Digits    int            `json:"digits"`
	Period    int            `json:"period"`
	State     State          `json:"state"` // pending, active, disabled
	Created   time.Time      `json:"created"`
	LastUsed  time.Time      `json:"last_used,omitzero"`
	Serial    string         `json:"serial,omitempty"` // a hardware token's
}

// Info returns what listings show of t.
func (t *Token) Info() Info {
	return Info{User: t.User, ID: t.ID, Name: t.Name, Algorithm: t.Algorithm, Digits: t.Digits,
		Period: t.Period, State: t.State, Created: t.Created, LastUsed: t.LastUsed, Serial: t.Serial}
}
