package busapi

import "github.com/godbus/dbus/v5"

// D-Bus error names; the body is one plain sentence meant for the user.
const (
	ErrUnavailable = Interface + ".Error.Unavailable" // the daemon cannot answer now
	ErrRefused     = Interface + ".Error.Refused"     // the caller may not do this
	ErrNotFound    = Interface + ".Error.NotFound"    // no such token of the caller
	ErrInvalid     = Interface + ".Error.Invalid"     // a malformed argument
)

// busError returns a D-Bus error of the given name with one sentence.
func busError(name, sentence string) *dbus.Error {
	return dbus.NewError(name, []any{sentence})
}

var (
	errEnrollUnavailable = busError(ErrUnavailable, "enrollment is not available on this node: it has no registry")
	errTimeout           = busError(ErrUnavailable, "totp-syncd did not answer in time; try again")
	errStore             = busError(ErrUnavailable, "the token store of this node cannot be read now; try again")
	errNoCaller          = busError(ErrRefused, "your connection to the bus has no user that this node knows")
)
