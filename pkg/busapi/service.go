package busapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/version"
)

// ErrNameTaken means another connection owns syncbus.Name: another totp-syncd runs on this node.
var ErrNameTaken = errors.New("the bus name " + syncbus.Name + " is owned by another connection (is another totp-syncd running?)")

// Options configure a Service. Zero values take the defaults named.
type Options struct {
	Config  *config.Config    // the node's config: [store] and [sync]; required
	Metrics *nodesync.Metrics // the syncer's: connected, revisions; nil: never connected
	// Kick ends the syncer's back-off wait (nodesync.Syncer.Kick); nil: SyncNow only waits.
	Kick func() bool
	// Enroll calls the registry's enrollment endpoints; nil: a nodesync.EnrollClient for
	// Config.Sync when a registry is set, else the enrollment methods answer Unavailable.
	Enroll      Enroller
	CallTimeout time.Duration    // bounds every method (5 s)
	SyncWait    time.Duration    // how long SyncNow waits to catch up (2 s)
	KickEvery   time.Duration    // at most one kick per this, whoever asks (5 s)
	Now         func() time.Time // clock.Now
	Log         *slog.Logger     // slog.Default()
}

func (o *Options) defaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.SyncWait <= 0 {
		o.SyncWait = 2 * time.Second
	}
	o.SyncWait = min(o.SyncWait, o.CallTimeout/2) // the answer is still read in time
	if o.KickEvery <= 0 {
		o.KickEvery = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = clock.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Service is the exported object on one bus connection.
type Service struct {
	o      Options
	conn   *dbus.Conn
	tokens *store.Tokens

	mu       sync.Mutex
	lastKick time.Time
}

// Open connects to the bus at address ("" is the system bus), exports the object and takes
// Name. A name owned by another connection is ErrNameTaken. Close the Service when done.
func Open(ctx context.Context, address string, o Options) (*Service, error) {
	if o.Config == nil {
		return nil, errors.New("busapi: no config")
	}
	o.defaults()
	address = syncbus.Address(address)
	conn, err := connect(ctx, address, o.CallTimeout)
	if err != nil {
		return nil, err
	}
	if o.Enroll == nil && len(o.Config.Sync.Registry) > 0 {
		ec, err := nodesync.NewEnrollClient(o.Config.Sync, o.CallTimeout, version.Version)
		if err != nil {
			o.Log.Warn("D-Bus enrollment methods unavailable: no registry client", "err", err)
		} else {
			o.Enroll = ec
		}
	}
	cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
	defer cancel()
	s := &Service{o: o, conn: conn, tokens: store.NewTokens(store.Options{Dir: o.Config.Store.Dir, Timeout: o.Config.Store.OpenTimeout})}
	if err := s.export(cctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// connect dials, authenticates and says Hello within timeout. The connection lives until ctx
// ends or it is closed.
func connect(ctx context.Context, address string, timeout time.Duration) (*dbus.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := syncbus.Connect(cctx, address)
	if err != nil {
		return nil, err
	}
	go func() { // the service's connection ends with ctx
		select {
		case <-ctx.Done():
			conn.Close()
		case <-conn.Context().Done():
		}
	}()
	return conn, nil
}

func (s *Service) export(ctx context.Context) error {
	if err := s.conn.Export(&object{s: s}, syncbus.Path, syncbus.Interface); err != nil {
		return fmt.Errorf("export %s: %w", syncbus.Path, err)
	}
	if err := s.conn.Export(introspectable(introspection), syncbus.Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("export introspection: %w", err)
	}
	var reply uint32
	err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.RequestName", 0, syncbus.Name,
		uint32(dbus.NameFlagDoNotQueue)).Store(&reply)
	if err != nil {
		return fmt.Errorf("request the bus name %s: %w", syncbus.Name, err)
	}
	switch dbus.RequestNameReply(reply) {
	case dbus.RequestNameReplyPrimaryOwner, dbus.RequestNameReplyAlreadyOwner:
		return nil
	case dbus.RequestNameReplyExists:
		return ErrNameTaken
	default:
		return fmt.Errorf("request the bus name %s: reply %d", syncbus.Name, reply)
	}
}

// Done is closed when the bus connection is lost or closed.
func (s *Service) Done() <-chan struct{} { return s.conn.Context().Done() }

// Close gives up the name and closes the connection.
func (s *Service) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.ReleaseName", 0, syncbus.Name) // best effort
	return s.conn.Close()
}

// caller is the user behind a message, as the bus daemon knows it.
type caller struct {
	uid  uint32
	name string
	by   string // "root" when root acts for the user (enrollment at login), else ""
}

// identify asks the bus daemon for the sender's uid and resolves it to a user name.
func (s *Service) identify(ctx context.Context, sender dbus.Sender) (caller, *dbus.Error) {
	var uid uint32
	err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		s.o.Log.Warn("D-Bus caller not identified", "sender", string(sender), "err", err)
		return caller{}, errNoCaller
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		s.o.Log.Warn("D-Bus caller has no user name", "sender", string(sender), "uid", uid, "err", err)
		return caller{}, errNoCaller
	}
	if token.ValidUser(u.Username) != nil {
		s.o.Log.Warn("D-Bus caller has an unusable user name", "sender", string(sender), "uid", uid)
		return caller{}, errNoCaller
	}
	return caller{uid: uid, name: u.Username}, nil
}

// call runs fn for the identified sender within CallTimeout. When the deadline passes first,
// the caller gets Error.Unavailable and fn's result is dropped when it ends.
func call[T any](s *Service, method string, sender dbus.Sender, fn func(context.Context, caller) (T, *dbus.Error)) (T, *dbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.CallTimeout)
	defer cancel()
	type result struct {
		v   T
		err *dbus.Error
	}
	done := make(chan result, 1)
	go func() {
		c, derr := s.identify(ctx, sender)
		if derr != nil {
			done <- result{err: derr}
			return
		}
		v, derr := fn(ctx, c)
		done <- result{v, derr}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		s.o.Log.Warn("D-Bus call timed out", "method", method, "sender", string(sender), "timeout", s.o.CallTimeout)
		var zero T
		return zero, errTimeout
	}
}

// meta reads tokens.db's meta; a node that never synced has the zero Meta.
func (s *Service) meta() (store.Meta, error) {
	m, err := s.tokens.Meta()
	if errors.Is(err, store.ErrNoStore) {
		return store.Meta{}, nil
	}
	return m, err
}

// userTokens reads the user's tokens; a node that never synced has none.
func (s *Service) userTokens(name string) ([]token.Token, error) {
	var out []token.Token
	err := s.tokens.View(func(x *store.TokensTx) error {
		var err error
		out, err = x.UserTokens(name)
		return err
	})
	if errors.Is(err, store.ErrNoStore) {
		return nil, nil
	}
	return out, err
}

// kick asks the syncer to reconnect now, at most once per KickEvery.
func (s *Service) kick(c caller) {
	if s.o.Kick == nil {
		return
	}
	s.mu.Lock()
	now := s.o.Now()
	due := s.lastKick.IsZero() || now.Sub(s.lastKick) >= s.o.KickEvery || now.Before(s.lastKick)
	if due {
		s.lastKick = now
	}
	s.mu.Unlock()
	if due && s.o.Kick() {
		s.o.Log.Info("sync kicked over D-Bus", "user", c.name, "uid", c.uid)
	}
}

// caughtUp reports whether the syncer is connected with every announced revision applied.
func (s *Service) caughtUp() bool {
	if s.o.Metrics == nil || !s.o.Metrics.Connected() {
		return false
	}
	applied, seen := s.o.Metrics.Revisions()
	return applied >= seen
}
