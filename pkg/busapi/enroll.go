package busapi

import (
	"context"
	"errors"
	"os/user"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Enroller is the registry's enrollment API as the node calls it (nodesync.EnrollClient).
type Enroller interface {
	Begin(ctx context.Context, user, name, proof string) (registryapi.Enrollment, error)
	Finish(ctx context.Context, user, id, code string) (registryapi.FinishResult, error)
	Rename(ctx context.Context, user, id, name string) error
	Remove(ctx context.Context, user, id, proof string) error
	BackupCodes(ctx context.Context, user, proof string) ([]string, error)
	// Bootstrap mails user a one-time code for a first token; it returns the code's expiry.
	Bootstrap(ctx context.Context, user string) (time.Time, error)
}

// maxArg bounds a string argument of an enrollment method; the registry checks the rest.
const maxArg = 256

var (
	errUnreachable = busError(syncbus.ErrUnavailable, "the registry cannot be reached; try again later")
	errRegistry    = busError(syncbus.ErrUnavailable, "the registry could not do this now; try again later")
	errTooLong     = busError(syncbus.ErrInvalid, "an argument is too long")
	errLocal       = busError(syncbus.ErrUnavailable, "the token store of this node could not be changed now; try again later")
)

// enroller returns the registry client, or Error.Unavailable on a node without one.
func (s *Service) enroller() (Enroller, *dbus.Error) {
	if s.o.Enroll == nil {
		return nil, errEnrollUnavailable
	}
	return s.o.Enroll, nil
}

// registryCtx leaves a fifth of the call's time to answer the caller after the registry.
func (s *Service) registryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.CallTimeout*4/5)
}

// checkArgs refuses overlong arguments before they reach the registry.
func checkArgs(args ...string) *dbus.Error {
	for _, a := range args {
		if len(a) > maxArg {
			return errTooLong
		}
	}
	return nil
}

// registryError maps an Enroller's error to a D-Bus error and logs why (never a secret: neither
// a refusal nor nodesync's errors hold one). A *refusal.Error (of the local authority, or the
// registry's as nodesync reads it) keeps its sentence under the name of its kind.
func (s *Service) registryError(method string, c caller, err error) *dbus.Error {
	if ref, ok := refusal.As(err); ok {
		s.o.Log.Info("D-Bus "+method+": refused", "user", c.name, "uid", c.uid, "kind", string(ref.Kind), "reason", ref.Message)
		return busError(syncbus.ErrorName(ref.Kind), ref.Message)
	}
	if len(s.o.Config.Sync.Registry) == 0 {
		s.o.Log.Error("D-Bus "+method+": local enrollment failed", "user", c.name, "uid", c.uid, "err", err)
		return errLocal
	}
	var re *nodesync.RegistryError
	if !errors.As(err, &re) {
		s.o.Log.Warn("D-Bus "+method+": registry unreachable", "user", c.name, "uid", c.uid, "err", err)
		return errUnreachable
	}
	s.o.Log.Warn("D-Bus "+method+": registry failed", "user", c.name, "uid", c.uid, "status", re.Status, "reason", re.Message)
	return errRegistry
}

func (s *Service) beginEnrollment(ctx context.Context, c caller, name, proof string) (registryapi.Enrollment, *dbus.Error) {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(name, proof)
	}
	if derr != nil {
		return registryapi.Enrollment{}, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	a, err := e.Begin(ctx, c.name, name, proof)
	if err != nil {
		return registryapi.Enrollment{}, s.registryError("BeginEnrollment", c, err)
	}
	s.o.Log.Info("D-Bus BeginEnrollment: pending token", "user", c.name, "uid", c.uid, "by", c.by, "token", a.ID,
		"expires", a.Expires.Format(time.RFC3339))
	return a, nil
}

func (s *Service) finishEnrollment(ctx context.Context, c caller, id, code string) (registryapi.FinishResult, *dbus.Error) {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(id, code)
	}
	if derr != nil {
		return registryapi.FinishResult{}, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	r, err := e.Finish(ctx, c.name, id, code)
	if err != nil {
		return registryapi.FinishResult{}, s.registryError("FinishEnrollment", c, err)
	}
	s.o.Log.Info("D-Bus FinishEnrollment", "user", c.name, "uid", c.uid, "by", c.by, "token", id, "status", r.Status,
		"skew_s", r.SkewS, "backup_codes", len(r.BackupCodes))
	if r.Status == "active" {
		s.kick(c) // fetch the new token soon
	}
	return r, nil
}

func (s *Service) renameToken(ctx context.Context, c caller, id, name string) *dbus.Error {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(id, name)
	}
	if derr != nil {
		return derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	if err := e.Rename(ctx, c.name, id, name); err != nil {
		return s.registryError("RenameToken", c, err)
	}
	s.o.Log.Info("D-Bus RenameToken", "user", c.name, "uid", c.uid, "token", id)
	s.kick(c)
	return nil
}

func (s *Service) removeToken(ctx context.Context, c caller, id, proof string) *dbus.Error {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(id, proof)
	}
	if derr != nil {
		return derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	if err := e.Remove(ctx, c.name, id, proof); err != nil {
		return s.registryError("RemoveToken", c, err)
	}
	s.o.Log.Info("D-Bus RemoveToken", "user", c.name, "uid", c.uid, "token", id)
	s.kick(c)
	return nil
}

func (s *Service) backupCodes(ctx context.Context, c caller, proof string) ([]string, *dbus.Error) {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(proof)
	}
	if derr != nil {
		return nil, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	codes, err := e.BackupCodes(ctx, c.name, proof)
	if err != nil {
		return nil, s.registryError("RegenerateBackupCodes", c, err)
	}
	s.o.Log.Info("D-Bus RegenerateBackupCodes", "user", c.name, "uid", c.uid, "codes", len(codes))
	return codes, nil
}

func (s *Service) requestBootstrap(ctx context.Context, c caller) (int64, *dbus.Error) {
	e, derr := s.enroller()
	if derr != nil {
		return 0, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	exp, err := e.Bootstrap(ctx, c.name)
	if err != nil {
		return 0, s.registryError("RequestBootstrapCode", c, err)
	}
	s.o.Log.Info("D-Bus RequestBootstrapCode: code mailed", "user", c.name, "uid", c.uid, "expires", exp.Format(time.RFC3339))
	return exp.Unix(), nil
}

// onBehalf is the caller root names for BeginEnrollmentFor and FinishEnrollmentFor: the PAM
// helper enrolling a user at login. Any other caller is refused, and so is a user name that is
// not valid in the store or unknown to this node.
func (s *Service) onBehalf(c caller, name string) (caller, *dbus.Error) {
	if c.uid != 0 {
		s.o.Log.Warn("D-Bus enrollment on behalf refused: caller is not root", "caller", c.name, "uid", c.uid)
		return caller{}, errNotRoot
	}
	if token.ValidUser(name) != nil || len(name) > maxArg {
		return caller{}, busError(syncbus.ErrInvalid, "not a valid user name")
	}
	u, err := user.Lookup(name)
	if err != nil {
		s.o.Log.Warn("D-Bus enrollment on behalf refused: unknown user", "user", name, "err", err)
		return caller{}, busError(syncbus.ErrNotFound, "no such user on this node")
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return caller{}, busError(syncbus.ErrNotFound, "no such user on this node")
	}
	return caller{uid: uint32(uid), name: u.Username, by: "root"}, nil
}
