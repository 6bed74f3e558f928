package busapi

import (
	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/syncbus"
)

// busError returns a D-Bus error of the given name with one sentence.
func busError(name, sentence string) *dbus.Error {
	return dbus.NewError(name, []any{sentence})
}

var (
	errEnrollUnavailable = busError(syncbus.ErrUnavailable, "enrollment is not available on this node: it has no registry and no local authority")
	errNotRoot           = busError(syncbus.ErrRefused, "only root (the PAM helper) may enroll on behalf of a user")
	errTimeout           = busError(syncbus.ErrUnavailable, "totp-syncd did not answer in time; try again")
	errStore             = busError(syncbus.ErrUnavailable, "the token store of this node cannot be read now; try again")
	errNoCaller          = busError(syncbus.ErrRefused, "your connection to the bus has no user that this node knows")
)
