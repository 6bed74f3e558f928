package busapi

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// object carries the interface's methods; godbus exports every exported method of it, so it
// has no others. The dbus.Sender argument is filled from the message header by godbus and is
// not part of the D-Bus signature.
type object struct{ s *Service }

// Status returns the node's sync status and the caller's number of active tokens.
func (o *object) Status(sender dbus.Sender) (map[string]dbus.Variant, *dbus.Error) {
	s := o.s
	return call(s, "Status", sender, func(ctx context.Context, c caller) (map[string]dbus.Variant, *dbus.Error) {
		m, err := s.meta()
		if err != nil {
			s.o.Log.Warn("D-Bus Status: tokens.db unreadable", "user", c.name, "err", err)
			return nil, errStore
		}
		toks, err := s.userTokens(c.name)
		if err != nil {
			s.o.Log.Warn("D-Bus Status: tokens.db unreadable", "user", c.name, "err", err)
			return nil, errStore
		}
		var active uint32
		for _, t := range toks {
			if t.State == token.Active {
				active++
			}
		}
		last, staleness := int64(0), -1.0
		if !m.LastContact.IsZero() {
			last, staleness = m.LastContact.Unix(), s.o.Now().Sub(m.LastContact).Seconds()
		}
		connected := s.o.Metrics != nil && s.o.Metrics.Connected()
		return map[string]dbus.Variant{
			"registry":           dbus.MakeVariant(s.o.Config.Sync.Registry.String()),
			"applied_revision":   dbus.MakeVariant(int64(m.Revision)),
			"last_contact":       dbus.MakeVariant(last),
			"staleness_s":        dbus.MakeVariant(staleness),
			"connected":          dbus.MakeVariant(connected),
			"tokens_active_here": dbus.MakeVariant(active),
		}, nil
	})
}

// ListTokens returns the caller's tokens, sorted by id.
func (o *object) ListTokens(sender dbus.Sender) ([]syncbus.TokenInfo, *dbus.Error) {
	s := o.s
	return call(s, "ListTokens", sender, func(ctx context.Context, c caller) ([]syncbus.TokenInfo, *dbus.Error) {
		toks, err := s.userTokens(c.name)
		if err != nil {
			s.o.Log.Warn("D-Bus ListTokens: tokens.db unreadable", "user", c.name, "err", err)
			return nil, errStore
		}
		out := make([]syncbus.TokenInfo, 0, len(toks))
		for _, t := range toks {
			out = append(out, syncbus.TokenInfo{ID: t.ID, Name: t.Name, State: string(t.State),
				Created: t.Created.Unix(), Active: t.State == token.Active})
		}
		return out, nil
	})
}

// SyncNow ends the syncer's back-off wait and returns the applied revision once caught up, or
// after SyncWait.
func (o *object) SyncNow(sender dbus.Sender) (int64, *dbus.Error) {
	s := o.s
	return call(s, "SyncNow", sender, func(ctx context.Context, c caller) (int64, *dbus.Error) {
		s.kick(c)
		wait, cancel := context.WithTimeout(ctx, s.o.SyncWait)
		defer cancel()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		// A standalone node has nothing to catch up with: its tokens.db is the authority.
		for len(s.o.Config.Sync.Registry) > 0 && !s.caughtUp() && wait.Err() == nil {
			select {
			case <-wait.Done():
			case <-tick.C:
			}
		}
		m, err := s.meta()
		if err != nil {
			s.o.Log.Warn("D-Bus SyncNow: tokens.db unreadable", "user", c.name, "err", err)
			return 0, errStore
		}
		return int64(m.Revision), nil
	})
}

// The enrollment methods of docs/enrollment.md: forwarded to the registry for the caller
// (enroll.go).

// BeginEnrollment creates a pending token through the registry.
func (o *object) BeginEnrollment(sender dbus.Sender, name, proof string) (string, string, int64, *dbus.Error) {
	type begun struct {
		id, uri string
		expires int64
	}
	s := o.s
	r, err := call(s, "BeginEnrollment", sender, func(ctx context.Context, c caller) (begun, *dbus.Error) {
		a, err := s.beginEnrollment(ctx, c, name, proof)
		return begun{a.ID, a.URI, a.Expires.Unix()}, err
	})
	return r.id, r.uri, r.expires, err
}

// FinishEnrollment verifies a pending token's first code through the registry.
func (o *object) FinishEnrollment(sender dbus.Sender, id, code string) (string, int32, []string, *dbus.Error) {
	s := o.s
	r, err := call(s, "FinishEnrollment", sender, func(ctx context.Context, c caller) (registryapi.FinishResult, *dbus.Error) {
		return s.finishEnrollment(ctx, c, id, code)
	})
	codes := r.BackupCodes
	if codes == nil {
		codes = []string{}
	}
	return r.Status, int32(r.SkewS), codes, err
}

// RequestBootstrapCode asks the registry to mail the caller a one-time code for a first token
// (sites with bootstrap = "mail"); it returns the code's expiry (unix s).
func (o *object) RequestBootstrapCode(sender dbus.Sender) (int64, *dbus.Error) {
	s := o.s
	return call(s, "RequestBootstrapCode", sender, func(ctx context.Context, c caller) (int64, *dbus.Error) {
		return s.requestBootstrap(ctx, c)
	})
}

// BeginEnrollmentFor is BeginEnrollment for user, callable by root only: the PAM helper
// enrolling a user in enrollment grace at login. It takes no proof, so it only ever starts a
// first token (the authority refuses it otherwise).
func (o *object) BeginEnrollmentFor(sender dbus.Sender, user, name string) (string, string, int64, *dbus.Error) {
	type begun struct {
		id, uri string
		expires int64
	}
	s := o.s
	r, err := call(s, "BeginEnrollmentFor", sender, func(ctx context.Context, c caller) (begun, *dbus.Error) {
		u, derr := s.onBehalf(c, user)
		if derr != nil {
			return begun{}, derr
		}
		a, derr := s.beginEnrollment(ctx, u, name, "")
		return begun{a.ID, a.URI, a.Expires.Unix()}, derr
	})
	return r.id, r.uri, r.expires, err
}

// FinishEnrollmentFor is FinishEnrollment for user, callable by root only.
func (o *object) FinishEnrollmentFor(sender dbus.Sender, user, id, code string) (string, int32, []string, *dbus.Error) {
	s := o.s
	r, err := call(s, "FinishEnrollmentFor", sender, func(ctx context.Context, c caller) (registryapi.FinishResult, *dbus.Error) {
		u, derr := s.onBehalf(c, user)
		if derr != nil {
			return registryapi.FinishResult{}, derr
		}
		return s.finishEnrollment(ctx, u, id, code)
	})
	codes := r.BackupCodes
	if codes == nil {
		codes = []string{}
	}
	return r.Status, int32(r.SkewS), codes, err
}

// RenameToken renames one of the caller's tokens.
func (o *object) RenameToken(sender dbus.Sender, id, name string) *dbus.Error {
	s := o.s
	_, err := call(s, "RenameToken", sender, func(ctx context.Context, c caller) (struct{}, *dbus.Error) {
		return struct{}{}, s.renameToken(ctx, c, id, name)
	})
	return err
}

// RemoveToken removes one of the caller's tokens.
func (o *object) RemoveToken(sender dbus.Sender, id, proof string) *dbus.Error {
	s := o.s
	_, err := call(s, "RemoveToken", sender, func(ctx context.Context, c caller) (struct{}, *dbus.Error) {
		return struct{}{}, s.removeToken(ctx, c, id, proof)
	})
	return err
}

// RegenerateBackupCodes replaces the caller's backup codes.
func (o *object) RegenerateBackupCodes(sender dbus.Sender, proof string) ([]string, *dbus.Error) {
	s := o.s
	return call(s, "RegenerateBackupCodes", sender, func(ctx context.Context, c caller) ([]string, *dbus.Error) {
		return s.backupCodes(ctx, c, proof)
	})
}
