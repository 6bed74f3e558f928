package enrollcli

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
)

// Service is the D-Bus interface io.github.pamtotp.Sync1 as the CLI uses it. Errors are
// *refusal.Error with a sentence to print.
type Service interface {
	Status(ctx context.Context) (map[string]any, error)
	ListTokens(ctx context.Context) ([]syncbus.TokenInfo, error)
	BeginEnrollment(ctx context.Context, name, proof string) (id, uri string, expires int64, err error)
	FinishEnrollment(ctx context.Context, id, code string) (status string, skewS int32, codes []string, err error)
	RenameToken(ctx context.Context, id, name string) error
	RemoveToken(ctx context.Context, id, proof string) error
	RegenerateBackupCodes(ctx context.Context, proof string) ([]string, error)
	RequestBootstrapCode(ctx context.Context) (expires int64, err error)
	SyncNow(ctx context.Context) (int64, error)
}

// errNoDaemon is the answer when nobody owns the service's name.
var errNoDaemon = &refusal.Error{Kind: refusal.Unavailable,
	Message: "totp-syncd is not running on this node (no " + syncbus.Name + " on the system bus)"}

// Bus is a Service over a bus connection.
type Bus struct {
	conn *dbus.Conn
	obj  dbus.BusObject
}

// DialTimeout bounds connecting to the bus and its handshake.
const DialTimeout = 5 * time.Second

// Dial connects to the bus at address ("" is $DBUS_SYSTEM_BUS_ADDRESS or the system bus) within
// DialTimeout; the connection lives until it is closed.
func Dial(ctx context.Context, address string) (*Bus, error) {
	address = syncbus.Address(address)
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn, err := syncbus.Connect(dctx, address)
	switch {
	case errors.Is(err, syncbus.ErrNoAnswer):
		return nil, &refusal.Error{Kind: refusal.Unavailable, Message: fmt.Sprintf("the system bus at %s does not answer (is dbus running?)", address)}
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return nil, &refusal.Error{Kind: refusal.Unavailable, Message: fmt.Sprintf("the system bus is not running on this node (nothing at %s); "+
			"totp needs it to reach totp-syncd", address)}
	case err != nil:
		return nil, &refusal.Error{Kind: refusal.Unavailable, Message: fmt.Sprintf("cannot connect to the system bus at %s: %v", address, err)}
	}
	return &Bus{conn: conn, obj: conn.Object(syncbus.Name, syncbus.Path)}, nil
}

// Close closes the connection.
func (b *Bus) Close() error { return b.conn.Close() }

func (b *Bus) call(ctx context.Context, method string, args ...any) (*dbus.Call, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := b.obj.CallWithContext(ctx, syncbus.Interface+"."+method, 0, args...)
	if c.Err == nil {
		return c, nil
	}
	var de dbus.Error
	if errors.As(c.Err, &de) {
		switch de.Name {
		case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
			return nil, errNoDaemon
		}
		msg := de.Name
		if len(de.Body) > 0 {
			if s, ok := de.Body[0].(string); ok {
				msg = s
			}
		}
		return nil, &refusal.Error{Kind: syncbus.KindOf(de.Name), Message: msg}
	}
	if errors.Is(c.Err, context.DeadlineExceeded) {
		return nil, &refusal.Error{Kind: refusal.Unavailable, Message: "totp-syncd did not answer in time; try again"}
	}
	return nil, &refusal.Error{Kind: refusal.Unavailable, Message: fmt.Sprintf("the call to totp-syncd failed: %v", c.Err)}
}

// Status implements Service.
func (b *Bus) Status(ctx context.Context) (map[string]any, error) {
	c, err := b.call(ctx, "Status")
	if err != nil {
		return nil, err
	}
	var m map[string]dbus.Variant
	if err := c.Store(&m); err != nil {
		return nil, err
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.Value()
	}
	return out, nil
}

// ListTokens implements Service.
func (b *Bus) ListTokens(ctx context.Context) ([]syncbus.TokenInfo, error) {
	c, err := b.call(ctx, "ListTokens")
	if err != nil {
		return nil, err
	}
	var toks []syncbus.TokenInfo
	return toks, c.Store(&toks)
}

// BeginEnrollment implements Service.
func (b *Bus) BeginEnrollment(ctx context.Context, name, proof string) (string, string, int64, error) {
	c, err := b.call(ctx, "BeginEnrollment", name, proof)
	if err != nil {
		return "", "", 0, err
	}
	var id, uri string
	var exp int64
	return id, uri, exp, c.Store(&id, &uri, &exp)
}

// FinishEnrollment implements Service.
func (b *Bus) FinishEnrollment(ctx context.Context, id, code string) (string, int32, []string, error) {
	c, err := b.call(ctx, "FinishEnrollment", id, code)
	if err != nil {
		return "", 0, nil, err
	}
	var st string
	var skew int32
	var codes []string
	return st, skew, codes, c.Store(&st, &skew, &codes)
}

// RenameToken implements Service.
func (b *Bus) RenameToken(ctx context.Context, id, name string) error {
	_, err := b.call(ctx, "RenameToken", id, name)
	return err
}

// RemoveToken implements Service.
func (b *Bus) RemoveToken(ctx context.Context, id, proof string) error {
	_, err := b.call(ctx, "RemoveToken", id, proof)
	return err
}

// RegenerateBackupCodes implements Service.
func (b *Bus) RegenerateBackupCodes(ctx context.Context, proof string) ([]string, error) {
	c, err := b.call(ctx, "RegenerateBackupCodes", proof)
	if err != nil {
		return nil, err
	}
	var codes []string
	return codes, c.Store(&codes)
}

// RequestBootstrapCode implements Service.
func (b *Bus) RequestBootstrapCode(ctx context.Context) (int64, error) {
	c, err := b.call(ctx, "RequestBootstrapCode")
	if err != nil {
		return 0, err
	}
	var exp int64
	return exp, c.Store(&exp)
}

// SyncNow implements Service.
func (b *Bus) SyncNow(ctx context.Context) (int64, error) {
	c, err := b.call(ctx, "SyncNow")
	if err != nil {
		return 0, err
	}
	var rev int64
	return rev, c.Store(&rev)
}
