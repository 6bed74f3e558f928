package admin

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Sentinel errors. Their text is meant for the admin and never holds a secret.
var (
	// ErrPending: the token has never been verified; it must be enrolled again, not enabled.
	ErrPending = errors.New("the token is pending: it becomes active only when a code from it is verified; remove it and add it again")
	// ErrNotPending: the token is no longer pending (verified, or removed, meanwhile).
	ErrNotPending = errors.New("the token is no longer pending")
	// ErrCancelled: the enrollment was interrupted (end of input or a signal).
	ErrCancelled = errors.New("enrollment cancelled")
	// ErrNotVerified: no valid code was entered within the allowed attempts.
	ErrNotVerified = errors.New("no valid code was entered")
	// ErrInvalidLines: an import file has invalid lines and nothing was written.
	ErrInvalidLines = errors.New("invalid lines; nothing was imported")
	// ErrInvalidPackages: a PSKC file has key packages that cannot be imported, and nothing was.
	ErrInvalidPackages = errors.New("key packages cannot be imported; nothing was imported")
	// ErrNotHardware: the token was not assigned from a hardware token.
	ErrNotHardware = errors.New("not a hardware token (it has no serial)")
)

// Admin changes one node's store. Its zero value is not usable; see New.
type Admin struct {
	Config *config.Config
	Tokens *store.Tokens
	State  *store.State
	// Rand is the source of secrets, token ids and backup codes (crypto/rand in production).
	Rand io.Reader
	// Now is the clock.
	Now func() time.Time
}

// New returns an Admin for the store that cfg names, with the real clock and crypto/rand.
func New(cfg *config.Config) *Admin {
	opts := store.Options{Dir: cfg.Store.Dir, Timeout: cfg.Store.OpenTimeout}
	return &Admin{
		Config: cfg,
		Tokens: store.NewTokens(opts),
		State:  store.NewState(opts),
		Rand:   rand.Reader,
		Now:    clock.Now,
	}
}

// prepare creates the store directory (root 0700) when it is missing, and checks it.
func (a *Admin) prepare() error {
	if err := securefile.MkdirAll(a.Config.Store.Dir, securefile.SecretDir); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	return nil
}

// ListTokens returns the tokens of user (all users when user is ""), in user and id order. The
// last use is the later of the record's and the last accepted time step in state.db. A store that
// was never written lists as empty.
func (a *Admin) ListTokens(user string) ([]token.Info, error) {
	var out []token.Info
	err := a.Tokens.View(func(x *store.TokensTx) error {
		add := func(t token.Token) error {
			out = append(out, t.Info())
			return nil
		}
		if user != "" {
			toks, err := x.UserTokens(user)
			if err != nil {
				return err
			}
			for _, t := range toks {
				_ = add(t)
			}
			return nil
		}
		return x.ForEachToken(add)
	})
	if errors.Is(err, store.ErrNoStore) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	err = a.State.View(func(x *store.StateTx) error {
		for i := range out {
			t := &out[i]
			if step := x.LastStep(t.User, t.ID); step > 0 && t.Period > 0 {
				if used := time.Unix(int64(step)*int64(t.Period), 0).UTC(); used.After(t.LastUsed) {
					t.LastUsed = used
				}
			}
		}
		return nil
	})
	return out, err
}

// RemoveToken deletes one token.
func (a *Admin) RemoveToken(user, id string) (token.Info, error) {
	var removed token.Info
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if err != nil {
			return err
		}
		removed = t.Info()
		return x.DeleteToken(user, id)
	})
	return removed, err
}

// RenameToken gives user's token id a new name and returns it as it was before.
func (a *Admin) RenameToken(user, id, name string) (token.Info, error) {
	if err := token.CheckName(name); err != nil {
		return token.Info{}, err
	}
	var before token.Info
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if err != nil {
			return err
		}
		before = t.Info()
		t.Name = name
		return x.PutToken(t)
	})
	return before, err
}

// SetState disables or enables a token and reports whether it changed: a token already in that
// state is left as it is (not written). A pending token can be neither: it was never verified,
// so enabling it would skip the proof that the user has the device, and a disabled record would
// forget that.
func (a *Admin) SetState(user, id string, to token.State) (token.Info, bool, error) {
	if to != token.Active && to != token.Disabled {
		return token.Info{}, false, fmt.Errorf("token state %q: %w", to, store.ErrInvalid)
	}
	var info token.Info
	changed := false
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if err != nil {
			return err
		}
		if t.State == token.Pending {
			return ErrPending
		}
		info = t.Info()
		if t.State == to {
			return nil
		}
		t.State, changed = to, true
		info = t.Info()
		return x.PutToken(t)
	})
	return info, changed, err
}

// HasActiveToken reports whether user has an active token (for hints after a removal).
func (a *Admin) HasActiveToken(user string) (bool, error) {
	active := false
	err := a.Tokens.View(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		for _, t := range toks {
			active = active || t.State == token.Active
		}
		return err
	})
	return active, err
}

// NewBackupCodes makes a fresh set of backup codes for user, replaces the old set and forgets
// which of the old codes were used. The plain codes are returned to be shown once.
func (a *Admin) NewBackupCodes(user string) ([]string, error) {
	if err := token.ValidUser(user); err != nil {
		return nil, err
	}
	if err := a.prepare(); err != nil {
		return nil, err
	}
	plain, recs, err := backupcode.New(a.Rand, user, backupcode.Count, a.Now())
	if err != nil {
		return nil, err
	}
	if err := a.Tokens.Update(func(x *store.TokensTx) error {
		return x.ReplaceBackupCodes(user, recs)
	}); err != nil {
		return nil, err
	}
	// The old used marks name the old records' ids, so they can only go stale, never match: a
	// failure here leaves dead entries behind, not usable codes.
	if err := a.State.Update(func(x *store.StateTx) error { return x.ForgetBackupUsed(user) }); err != nil {
		return nil, fmt.Errorf("new backup codes stored, but the old used marks were not cleared: %w", err)
	}
	return plain, nil
}

// Unlock clears the user's failures and back-off and returns what they were.
func (a *Admin) Unlock(user string) (store.Failures, error) {
	var before store.Failures
	if err := token.ValidUser(user); err != nil {
		return before, err
	}
	err := a.State.Update(func(x *store.StateTx) error {
		before = x.Failures(user)
		return x.ClearFailures(user)
	})
	return before, err
}

// ResetResult says what Reset removed.
type ResetResult struct {
	Tokens, BackupCodes int
}

// Reset removes all tokens and backup codes of user and everything logins recorded for them
// (the answer to a lost device).
func (a *Admin) Reset(user string) (ResetResult, error) {
	var r ResetResult
	if err := token.ValidUser(user); err != nil {
		return r, err
	}
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		if err != nil {
			return err
		}
		codes, err := x.BackupCodes(user)
		if err != nil {
			return err
		}
		r = ResetResult{Tokens: len(toks), BackupCodes: len(codes)}
		return x.DeleteUser(user)
	})
	if err != nil {
		return r, err
	}
	err = a.State.Update(func(x *store.StateTx) error { return x.ResetUser(user) })
	return r, err
}
