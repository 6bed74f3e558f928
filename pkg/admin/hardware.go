package admin

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
)

// PSKCOptions tune ImportPSKC.
type PSKCOptions struct {
	// DryRun checks and reports, and writes nothing.
	DryRun bool
	// KnownUser says whether a user exists; a token whose file names a user it knows is assigned
	// to that user at once (pending). Nil: every token is imported unassigned.
	KnownUser func(user string) bool
}

// PSKCReport says what ImportPSKC did (or, with a dry run, would do).
type PSKCReport struct {
	// Imported are the hardware tokens added to the unassigned ones, in file order.
	Imported []token.HardwareInfo
	// Assigned are the tokens whose file names a user that exists (PSKCOptions.KnownUser): they
	// went to that user at once, pending until a code from the device is verified
	// (AssignHardware again, or Confirm).
	Assigned []token.Info
	// Already are the serials that were imported before with the same seed (unassigned or
	// assigned since): skipped, so that importing a file twice adds nothing.
	Already []string
	// Invalid are the key packages that cannot be imported: the file's own (tokenimport), and
	// serials this store already holds with another seed.
	Invalid []tokenimport.PackageError
}

// ImportPSKC stores the hardware tokens of a parsed PSKC file as unassigned (token.Hardware), to
// be assigned to users later (AssignHardware). The whole file is checked first: with any invalid
// key package (f.Invalid, or a serial already here with another seed) nothing is written and the
// error is ErrInvalidPackages; the packages are in the report. One transaction writes all, so an
// import is all or nothing.
func (a *Admin) ImportPSKC(f tokenimport.PSKCFile, o PSKCOptions) (PSKCReport, error) {
	rep := PSKCReport{Invalid: f.Invalid}
	if len(rep.Invalid) > 0 {
		return rep, fmt.Errorf("%d %w", len(rep.Invalid), ErrInvalidPackages)
	}
	now := a.Now().UTC().Truncate(1e9)
	check := func(x *store.TokensTx) ([]token.Hardware, error) {
		assigned, err := x.AssignedSerials()
		if err != nil {
			return nil, err
		}
		var add []token.Hardware
		for _, t := range f.Tokens {
			var have []byte
			if h, err := x.Hardware(t.Serial); err == nil {
				have = h.Secret
			} else if !errors.Is(err, store.ErrNoHardware) {
				return nil, err
			} else if at, ok := assigned[t.Serial]; ok {
				have = at.Secret
			}
			switch {
			case have == nil:
				add = append(add, t.Hardware(now))
			case len(have) == len(t.Secret) && subtle.ConstantTimeCompare(have, t.Secret) == 1:
				rep.Already = append(rep.Already, t.Serial)
			default:
				rep.Invalid = append(rep.Invalid, tokenimport.PackageError{Position: t.Position, Serial: t.Serial,
					Msg: "this serial was imported before with another seed"})
			}
		}
		return add, nil
	}
	var add []token.Hardware
	var err error
	if o.DryRun {
		err = a.Tokens.View(func(x *store.TokensTx) error {
			add, err = check(x)
			return err
		})
		if errors.Is(err, store.ErrNoStore) { // nothing imported yet: every token is new
			add, err = nil, nil
			for _, t := range f.Tokens {
				add = append(add, t.Hardware(now))
			}
		}
	} else {
		if err := a.prepare(); err != nil {
			return rep, err
		}
		err = a.Tokens.Update(func(x *store.TokensTx) error {
			if add, err = check(x); err != nil || len(rep.Invalid) > 0 {
				return err
			}
			rep.Assigned = nil
			for _, h := range add {
				if h.User != "" && o.KnownUser != nil && o.KnownUser(h.User) {
					id, err := token.NewID(a.Rand, func(id string) bool {
						_, err := x.Token(h.User, id)
						return err == nil
					})
					if err != nil {
						return err
					}
					t := h.Assign(h.User, id, now)
					if err := x.PutToken(t); err != nil {
						return fmt.Errorf("hardware token %s for %s: %w", token.Clean(h.Serial), token.Clean(h.User), err)
					}
					rep.Assigned = append(rep.Assigned, t.Info())
					continue
				}
				if err := x.PutHardware(h); err != nil {
					return fmt.Errorf("hardware token %s: %w", token.Clean(h.Serial), err)
				}
			}
			return nil
		})
	}
	if err != nil {
		return rep, err
	}
	if len(rep.Invalid) > 0 {
		return rep, fmt.Errorf("%d %w", len(rep.Invalid), ErrInvalidPackages)
	}
	assigned := map[string]bool{}
	for _, t := range rep.Assigned {
		assigned[t.Serial] = true
	}
	for _, h := range add {
		if !assigned[h.Serial] {
			rep.Imported = append(rep.Imported, h.Info())
		}
	}
	return rep, nil
}

// ListHardware returns the unassigned hardware tokens, in serial order. A store that was never
// written has none.
func (a *Admin) ListHardware() ([]token.HardwareInfo, error) {
	var out []token.HardwareInfo
	err := a.Tokens.View(func(x *store.TokensTx) error {
		return x.ForEachHardware(func(h token.Hardware) error {
			out = append(out, h.Info())
			return nil
		})
	})
	if errors.Is(err, store.ErrNoStore) {
		return nil, nil
	}
	return out, err
}

// AssignHardware makes the unassigned hardware token serial the user's token: pending, like any
// new token, until a code from the device is verified (Confirm, or VerifyInteractive, which give
// it back to the unassigned ones when no code is verified: Cancel). A token already pending for
// this user (an assignment whose code was never verified) is returned as it is, to be verified.
func (a *Admin) AssignHardware(serial, user string) (*Enrollment, error) {
	if err := token.ValidUser(user); err != nil {
		return nil, err
	}
	e := &Enrollment{}
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		h, err := x.Hardware(serial)
		if errors.Is(err, store.ErrNoHardware) {
			assigned, aerr := x.AssignedSerials()
			if aerr != nil {
				return aerr
			}
			if t, ok := assigned[serial]; ok {
				if t.User == user && t.State == token.Pending {
					e.Token = t
					return nil
				}
				return fmt.Errorf("hardware token %s is assigned to %s already (token %s): unassign it first",
					token.Clean(serial), token.Clean(t.User), t.ID)
			}
		}
		if err != nil {
			return err
		}
		id, err := token.NewID(a.Rand, func(id string) bool {
			_, err := x.Token(user, id)
			return err == nil
		})
		if err != nil {
			return err
		}
		e.Token = h.Assign(user, id, a.Now())
		if err := x.DeleteHardware(serial); err != nil {
			return err
		}
		return x.PutToken(e.Token)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// UnassignHardware takes a hardware token from its user (a device handed back) and keeps it as
// unassigned, to be given to someone else. A lost device is removed instead (RemoveToken).
func (a *Admin) UnassignHardware(user, id string) (token.Info, error) {
	var before token.Info
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if err != nil {
			return err
		}
		if t.Serial == "" {
			return fmt.Errorf("token %s of %s: %w", id, token.Clean(user), ErrNotHardware)
		}
		before = t.Info()
		if err := x.DeleteToken(user, id); err != nil {
			return err
		}
		return x.PutHardware(t.Unassign(a.Now()))
	})
	return before, err
}
