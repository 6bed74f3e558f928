package verify

import (
	"errors"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// ErrProofUnavailable: the store could not be read or written while checking a proof.
var ErrProofUnavailable = errors.New("the token store cannot be used now")

// Proof checks answer as a proof of possession for a self-service change of user (adding a
// second token, removing one, new backup codes; docs/enrollment.md): a current code of an active
// token, with the window and replay rule of logins, or an unused backup code. It is counted
// against the user's failures exactly like a login under service, so guessing through
// enrollment gains nothing over guessing at login; a running back-off or lockout refuses
// without checking. No exemption, grace or policy mode applies. It logs one line like a login.
//
// It returns whether the proof was accepted and a sentence for the user (why not, or how many
// backup codes are left); never the answer. The error is ErrProofUnavailable when the store
// failed.
func (v *Verifier) Proof(user, service, answer string) (bool, string, error) {
	conv := &captured{}
	a := &attempt{v: v, conv: conv, now: v.Now(),
		req: &protocol.Request{User: user, Service: service, UserKnown: true}}
	a.pol, _ = v.Config.For(service, "") // without policy=, For always finds one
	opts := store.Options{Dir: v.Config.Store.Dir, Timeout: v.Config.Store.OpenTimeout}
	data, err := store.NewTokens(opts).ReadUser(user)
	if err != nil {
		a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), "")
		return false, msgUnavailable, ErrProofUnavailable
	}
	state := store.NewState(opts)
	var fails store.Failures
	if err := state.View(func(x *store.StateTx) error { fails = x.Failures(user); return nil }); err != nil {
		a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), "")
		return false, msgUnavailable, ErrProofUnavailable
	}
	if msg, locked := a.locked(fails); locked {
		a.log(protocol.MaxTries, "locked_out", "proof refused while locked", "")
		return false, msg, nil
	}
	switch a.check(state, data, answer, "", "") {
	case protocol.Success:
		return true, conv.said(), nil
	case protocol.AuthinfoUnavail:
		return false, msgUnavailable, ErrProofUnavailable
	}
	return false, conv.said(), nil
}

// captured is a Conversation that keeps what would be said and answers no prompt.
type captured struct{ msgs []string }

func (c *captured) Prompt(string, bool) (string, error) {
	return "", errors.New("no prompt in a proof")
}
func (c *captured) Info(text string) error  { c.msgs = append(c.msgs, text); return nil }
func (c *captured) Error(text string) error { c.msgs = append(c.msgs, text); return nil }
func (c *captured) SetAuthtok(string) error { return nil }
func (c *captured) said() string            { return strings.Join(c.msgs, " ") }
