// Package syncbus is the D-Bus contract of totp-syncd's service (docs/enrollment.md), the one
// place both sides take it from: the bus name, interface and object, the methods and their
// signatures, the types they carry and the error names, plus Connect (a bounded handshake). The
// service is package busapi (totp-syncd), the user's `totp` CLI is package enrollcli; both import
// this package and enrollcli imports nothing of the server. It imports only godbus.
//
// Methods of Interface (D-Bus signatures; errors are the Err* names below with one sentence):
//
//	Status() a{sv}
//	ListTokens() a(sssxb)                                  []TokenInfo
//	SyncNow() x
//	BeginEnrollment(s name, s proof) (s id, s uri, x expires)
//	FinishEnrollment(s id, s code) (s status, i skew_s, as backup_codes)
//	RenameToken(s id, s name)
//	RemoveToken(s id, s proof)
//	RegenerateBackupCodes(s proof) as
//	RequestBootstrapCode() x
//	BeginEnrollmentFor(s user, s name) (s id, s uri, x expires)          root only
//	FinishEnrollmentFor(s user, s id, s code) (s status, i skew_s, as)   root only
package syncbus

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/godbus/dbus/v5"
	"github.com/pam-totp/pam-totp/pkg/refusal"
)

// The service's bus name, interface and object.
const (
	Name      = "io.github.pamtotp.Sync1"
	Interface = "io.github.pamtotp.Sync1"
	Path      = dbus.ObjectPath("/io/github/pamtotp/Sync1")
)

// SystemBus is the system bus's address when neither a configured address nor
// DBUS_SYSTEM_BUS_ADDRESS is set.
const SystemBus = "unix:path=/run/dbus/system_bus_socket"

// D-Bus error names of the service; the body is one plain sentence meant for the user.
const (
	ErrUnavailable = Interface + ".Error.Unavailable" // the daemon cannot answer now
	ErrRefused     = Interface + ".Error.Refused"     // the caller may not do this
	ErrNotFound    = Interface + ".Error.NotFound"    // no such token of the caller
	ErrInvalid     = Interface + ".Error.Invalid"     // a malformed argument
)

// ErrorName is the D-Bus error name of a refusal of kind k: the error meant for a person
// (package refusal) as the service sends it.
func ErrorName(k refusal.Kind) string {
	switch k {
	case refusal.Invalid:
		return ErrInvalid
	case refusal.NotFound:
		return ErrNotFound
	case refusal.Refused, refusal.Conflict, refusal.TooMany:
		return ErrRefused
	default:
		return ErrUnavailable
	}
}

// KindOf is the kind of refusal a D-Bus error name means, read back by callers: Unavailable for
// any name but Refused, NotFound and Invalid.
func KindOf(name string) refusal.Kind {
	switch name {
	case ErrInvalid:
		return refusal.Invalid
	case ErrNotFound:
		return refusal.NotFound
	case ErrRefused:
		return refusal.Refused
	default:
		return refusal.Unavailable
	}
}

// Address is address, else $DBUS_SYSTEM_BUS_ADDRESS, else SystemBus.
func Address(address string) string {
	if address == "" {
		address = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if address == "" {
		address = SystemBus
	}
	return address
}

// TokenInfo is one element of ListTokens' a(sssxb): godbus marshals the fields in order.
type TokenInfo struct {
	ID      string
	Name    string
	State   string
	Created int64 // unix seconds
	Active  bool  // usable for logins on this node
}

// ErrNoAnswer: the bus accepted the connection but did not complete the handshake in time.
var ErrNoAnswer = errors.New("the bus does not answer")

// Connect dials the bus at Address(address), authenticates and says Hello, giving up when ctx
// ends (godbus itself has no deadline for this: a bus that accepts and never answers would
// hang the caller). The connection outlives ctx; close it when done. An unreachable bus and one
// that does not answer are told apart: ErrNoAnswer wraps the latter.
func Connect(ctx context.Context, address string) (*dbus.Conn, error) {
	addr := Address(address)
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := dbus.Connect(addr)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to the bus at %s: %w", addr, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("connect to the bus at %s: %w (%w)", addr, ErrNoAnswer, ctx.Err())
	}
}
