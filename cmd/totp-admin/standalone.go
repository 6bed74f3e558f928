package main

// The standalone backend: the node's own store (package admin), for sites without a registry.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
)

// standalone is the backend of a node without a registry.
type standalone struct{ e *env }

// admin opens the admin API on the config; writes says the verb changes tokens.db, which only
// the registry may feed on a node that follows one.
func (s *standalone) admin(writes bool) (*admin.Admin, error) {
	cfg, err := load(s.e)
	if err != nil {
		return nil, err
	}
	if writes && len(cfg.Sync.Registry) > 0 {
		return nil, fmt.Errorf("this node follows the registry %s: change tokens there "+
			"(totp-admin --registry %s ...); a local change would be undone at the next sync",
			token.Clean(cfg.Sync.Registry.String()), token.Clean(cfg.Sync.Registry.String()))
	}
	return admin.New(cfg), nil
}

// giving opens the admin API for a verb that gives user a pending token and asks for its first
// code (token add, token assign), warning when the host does not know the user. From then on a
// signal cancels ctx: the verb must not leave a pending token behind.
func (s *standalone) giving(u string) (*admin.Admin, context.Context, context.CancelFunc, error) {
	a, err := s.admin(true)
	if err != nil {
		return nil, nil, nil, err
	}
	if !knownUser(u) {
		fmt.Fprintf(s.e.stderr, "totp-admin: warning: user %s is not known to this host\n", token.Clean(u))
	}
	ctx, stop := signal.NotifyContext(s.e.ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	return a, ctx, stop, nil
}

func (s *standalone) tokenAdd(u string, o tokenOptions) error {
	e := s.e
	a, ctx, stop, err := s.giving(u)
	if err != nil {
		return err
	}
	defer stop()
	en, err := a.AddToken(u, admin.AddOptions{Name: o.name, Secret: o.secret, Params: o.params, Active: o.noVerify})
	if err != nil {
		return err
	}
	if err := admin.WriteEnrollment(e.stdout, en, o.qr); err != nil {
		if _, cerr := a.Cancel(u, en.Token.ID); cerr != nil {
			return fmt.Errorf("%w; removing the pending token failed: %v", err, cerr)
		}
		return err
	}
	if o.noVerify {
		fmt.Fprintf(e.stdout, "\nToken %s is active (--no-verify: no code was checked).\n", en.Token.ID)
	} else if err := a.VerifyInteractive(ctx, en, e.stdin, e.stdout); err != nil {
		if errors.Is(err, admin.ErrCancelled) || errors.Is(err, admin.ErrNotVerified) {
			return fmt.Errorf("token %s of %s not activated: %w", en.Token.ID, u, err)
		}
		return err
	}
	if !en.HasBackupCodes {
		fmt.Fprintf(e.stdout, "%s has no backup codes yet: run `totp-admin backup-codes %s` and hand them over.\n",
			token.Clean(u), token.Clean(u))
	}
	return nil
}

func (s *standalone) tokenList(u string, asJSON bool) error {
	e := s.e
	a, err := s.admin(false)
	if err != nil {
		return err
	}
	toks, err := a.ListTokens(u)
	if err != nil {
		return err
	}
	for i := range toks {
		t := &toks[i]
		t.User, t.ID, t.Name = token.Clean(t.User), token.Clean(t.ID), token.Clean(t.Name)
	}
	none := "No tokens."
	if u != "" {
		none = token.Clean(u) + " has no tokens."
	}
	if done, err := writeListing(e.stdout, toks, asJSON, none); done {
		return err
	}
	return tokenTable(e.stdout, toks)
}

func (s *standalone) tokenChange(verb, u, id string, o *changeOptions) error {
	e := s.e
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	var t token.Info
	changed := true
	switch verb {
	case "remove":
		t, err = a.RemoveToken(u, id)
	case "disable":
		t, changed, err = a.SetState(u, id, token.Disabled)
	case "enable":
		t, changed, err = a.SetState(u, id, token.Active)
	}
	if err != nil {
		return absent(e.stdout, o, err, registryapi.TokenResult{Info: token.Info{User: token.Clean(u), ID: token.Clean(id)}},
			fmt.Sprintf("Token %s of %s", token.Clean(id), token.Clean(u)))
	}
	noneActive := false
	if verb != "enable" {
		active, err := a.HasActiveToken(u)
		noneActive = err == nil && !active
	}
	return writeTokenChanged(e.stdout, o, verb, t, u, changed, noneActive)
}

func (s *standalone) backupCodes(u string) error {
	e := s.e
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	codes, err := a.NewBackupCodes(u)
	if err != nil {
		return err
	}
	return writeBackupCodes(e.stdout, u, codes)
}

func (s *standalone) unlock(u string, o *changeOptions) error {
	e := s.e
	a, err := s.admin(false)
	if err != nil {
		return err
	}
	before, err := a.Unlock(u)
	if err != nil {
		return err
	}
	changed := before.Count != 0 || !before.Until.IsZero()
	answer := registryapi.Unlocked{Name: token.Clean(u), Failures: before.Count, Outcome: registryapi.Outcome{Changed: changed}}
	if err := writeChange(e.stdout, o, answer, func(w io.Writer) {
		if !changed {
			fmt.Fprintf(w, "%s unchanged: no failed codes, nothing to unlock.\n", token.Clean(u))
		} else {
			fmt.Fprintf(w, "%s unlocked: %d failed codes and any back-off forgotten.\n", token.Clean(u), before.Count)
		}
	}); err != nil || o.asJSON {
		return err
	}
	// A node that follows a registry also counts the cluster's failures, which only the
	// registry can forget.
	var shared token.SharedFailures
	_ = a.Tokens.View(func(x *store.TokensTx) error {
		shared, err = x.SharedFailures(u)
		return err
	})
	if len(a.Config.Sync.Registry) > 0 && shared.Count > 0 {
		fmt.Fprintf(e.stdout, "The registry still counts %d failed codes of %s on the whole cluster; unlock there: totp-admin --registry %s unlock %s\n",
			shared.Count, token.Clean(u), token.Clean(a.Config.Sync.Registry.String()), token.Clean(u))
	}
	return nil
}

func (s *standalone) reset(u string) error {
	e := s.e
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	r, err := a.Reset(u)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s reset: %d tokens and %d backup codes removed, failures and last used codes forgotten.\n"+
		"Enroll a new token with `totp-admin token add %s`.\n", token.Clean(u), r.Tokens, r.BackupCodes, token.Clean(u))
	return nil
}

func (s *standalone) importCSV(path string, o csvOptions) error {
	e := s.e
	if o.scope != "" {
		return usagef("import csv: --scope needs --registry URL (or %s)", envRegistry)
	}
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	in, err := e.open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	start := time.Now()
	rep, err := a.ImportCSV(in, admin.ImportOptions{Params: o.params, SkipInvalid: o.skip, KnownUser: knownUser})
	for _, le := range rep.Invalid {
		fmt.Fprintf(e.stderr, "totp-admin: %s: %s\n", token.Clean(path), le)
	}
	for _, u := range rep.UnknownUsers {
		fmt.Fprintf(e.stderr, "totp-admin: warning: user %s is not known to this host\n", token.Clean(u))
	}
	if len(rep.UnknownUsers) > 0 {
		fmt.Fprintf(e.stderr, "totp-admin: warning: %d users are not known to this host; their tokens were imported all the same\n",
			len(rep.UnknownUsers))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Imported %d tokens (active) in %s", rep.Added, time.Since(start).Round(time.Millisecond))
	if rep.Duplicates > 0 {
		fmt.Fprintf(e.stdout, "; %d already present, skipped", rep.Duplicates)
	}
	if len(rep.Invalid) > 0 {
		fmt.Fprintf(e.stdout, "; %d invalid lines skipped", len(rep.Invalid))
	}
	if len(rep.UnknownUsers) > 0 {
		fmt.Fprintf(e.stdout, "; %d users not known to this host", len(rep.UnknownUsers))
	}
	fmt.Fprintln(e.stdout, ".")
	return nil
}

// knownUser says whether the user exists on this host. Only a definite "no such user" is unknown:
// a lookup that fails for another reason says nothing.
func knownUser(u string) bool {
	_, err := user.Lookup(u)
	var unknown user.UnknownUserError
	return !errors.As(err, &unknown)
}

func (s *standalone) importGA(u, path string) error {
	e := s.e
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	f, err := tokenimport.ReadGAFile(path)
	if err != nil {
		return err
	}
	res, err := a.ImportGA(u, f)
	if err != nil {
		return err
	}
	writeGAImport(e.stdout, gaImport{id: res.Token.ID, period: res.Token.Period, already: res.Already,
		scratch: res.Scratch, replaced: res.Replaced, ignored: f.Ignored}, u, path, "totp-admin")
	return nil
}
