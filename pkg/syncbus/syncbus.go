// Package syncbus is the D-Bus contract of totp-syncd's service (docs/enrollment.md), the one
// place both sides take it from: the bus name, interface and object, the methods and their
// signatures, the types they carry and the error names, plus Connect (a bounded handshake) and
// Client, a caller of the root-only methods BeginEnrollmentFor and FinishEnrollmentFor. The
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
	"time"

	"github.com/godbus/dbus/v5"
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

// Error is a D-Bus error of the service or the bus: Name and its sentence (not yet cleaned of
// control characters: callers that print it clean it).
type Error struct {
	Name    string
	Message string
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// TokenInfo is one element of ListTokens' a(sssxb): godbus marshals the fields in order.
type TokenInfo struct {
	ID      string
	Name    string
	State   string
	Created int64 // unix seconds
	Active  bool  // usable for logins on this node
}

// Pending is a pending token begun on behalf of a user. URI holds the secret.
type Pending struct {
	ID      string
	URI     string
	Expires time.Time
}

// Finished is the answer to a first code. BackupCodes (first token only) are secrets.
type Finished struct {
	Status      string // active, wrong_code, clock_skew, expired
	SkewS       int
	BackupCodes []string
}

// Client calls the root-only enrollment methods. Every call, the connection included, is bounded
// by the context; the connection is made at the first call.
type Client struct {
	Address string // "" : Address("")
	conn    *dbus.Conn
}

// Close closes the connection, if one was made.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// connect dials and says Hello within ctx.
func (c *Client) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	conn, err := Connect(ctx, c.Address)
	if err != nil {
		return err
	}
	c.conn = conn
	return nil
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

func (c *Client) call(ctx context.Context, method string, args ...any) (*dbus.Call, error) {
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	call := c.conn.Object(Name, Path).CallWithContext(ctx, Interface+"."+method, 0, args...)
	if call.Err == nil {
		return call, nil
	}
	var de dbus.Error
	if errors.As(call.Err, &de) {
		msg := ""
		if len(de.Body) > 0 {
			msg, _ = de.Body[0].(string)
		}
		return nil, &Error{Name: de.Name, Message: msg}
	}
	return nil, fmt.Errorf("%s: %w", method, call.Err)
}

// BeginFor starts a first token named name for user.
func (c *Client) BeginFor(ctx context.Context, user, name string) (Pending, error) {
	call, err := c.call(ctx, "BeginEnrollmentFor", user, name)
	if err != nil {
		return Pending{}, err
	}
	var p Pending
	var expires int64
	if err := call.Store(&p.ID, &p.URI, &expires); err != nil {
		return Pending{}, fmt.Errorf("BeginEnrollmentFor: %w", err)
	}
	p.Expires = time.Unix(expires, 0)
	return p, nil
}

// FinishFor checks the first code of user's pending token id.
func (c *Client) FinishFor(ctx context.Context, user, id, code string) (Finished, error) {
	call, err := c.call(ctx, "FinishEnrollmentFor", user, id, code)
	if err != nil {
		return Finished{}, err
	}
	var f Finished
	var skew int32
	if err := call.Store(&f.Status, &skew, &f.BackupCodes); err != nil {
		return Finished{}, fmt.Errorf("FinishEnrollmentFor: %w", err)
	}
	f.SkewS = int(skew)
	return f, nil
}
