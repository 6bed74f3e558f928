package busapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/nodesync"
)

// Enroller is the registry's enrollment API as the node calls it (nodesync.EnrollClient).
type Enroller interface {
	Begin(ctx context.Context, user, name, proof string) (nodesync.Enrollment, error)
	Finish(ctx context.Context, user, id, code string) (nodesync.FinishResult, error)
	Rename(ctx context.Context, user, id, name string) error
	Remove(ctx context.Context, user, id, proof string) error
	BackupCodes(ctx context.Context, user, proof string) ([]string, error)
}

// maxArg bounds a string argument of an enrollment method; the registry checks the rest.
const maxArg = 256

var (
	errUnreachable = busError(ErrUnavailable, "the registry cannot be reached; try again later")
	errRegistry    = busError(ErrUnavailable, "the registry could not do this now; try again later")
	errTooLong     = busError(ErrInvalid, "an argument is too long")
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

// registryError maps a registry call's error to a D-Bus error and logs why (never a secret:
// neither the registry's refusals nor nodesync's errors hold one).
func (s *Service) registryError(method string, c caller, err error) *dbus.Error {
	var re *nodesync.RegistryError
	if !errors.As(err, &re) {
		s.o.Log.Warn("D-Bus "+method+": registry unreachable", "user", c.name, "uid", c.uid, "err", err)
		return errUnreachable
	}
	s.o.Log.Info("D-Bus "+method+": registry refused", "user", c.name, "uid", c.uid, "status", re.Status, "reason", re.Message)
	switch re.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusTooManyRequests:
		return busError(ErrRefused, re.Message)
	case http.StatusNotFound:
		return busError(ErrNotFound, re.Message)
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return busError(ErrInvalid, re.Message)
	default:
		return errRegistry
	}
}

func (s *Service) beginEnrollment(ctx context.Context, c caller, name, proof string) (nodesync.Enrollment, *dbus.Error) {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(name, proof)
	}
	if derr != nil {
		return nodesync.Enrollment{}, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	a, err := e.Begin(ctx, c.name, name, proof)
	if err != nil {
		return nodesync.Enrollment{}, s.registryError("BeginEnrollment", c, err)
	}
	s.o.Log.Info("D-Bus BeginEnrollment: pending token", "user", c.name, "uid", c.uid, "token", a.ID,
		"expires", a.Expires.Format(time.RFC3339))
	return a, nil
}

func (s *Service) finishEnrollment(ctx context.Context, c caller, id, code string) (nodesync.FinishResult, *dbus.Error) {
	e, derr := s.enroller()
	if derr == nil {
		derr = checkArgs(id, code)
	}
	if derr != nil {
		return nodesync.FinishResult{}, derr
	}
	ctx, cancel := s.registryCtx(ctx)
	defer cancel()
	r, err := e.Finish(ctx, c.name, id, code)
	if err != nil {
		return nodesync.FinishResult{}, s.registryError("FinishEnrollment", c, err)
	}
	s.o.Log.Info("D-Bus FinishEnrollment", "user", c.name, "uid", c.uid, "token", id, "status", r.Status,
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
