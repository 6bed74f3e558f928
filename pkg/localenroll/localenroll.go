// Package localenroll is the enrollment authority of a standalone node: a node without a
// registry, where totp-syncd itself decides the self-service changes that the `totp` CLI and the
// PAM helper ask for over D-Bus, and writes them to the node's tokens.db and state.db
// (docs/enrollment.md, "Standalone mode").
//
// The rules are the registry's (pkg/registry, enroll.go), kept on the node's own files:
//
//   - a first token needs no proof; every further token, a removal of an active or disabled
//     token and new backup codes need a proof: a current code of an active token or an unused
//     backup code, checked by pkg/verify with the window and replay rule of logins and counted
//     against the same failures, back-off and lockout as logins (Verifier.Proof);
//   - a pending token is a tokens.db record in state "pending", which logins never accept; it
//     expires PendingTTL after its creation (swept lazily and by Sweep);
//   - a first code activates a pending token; its time step is stored in state.db first, so it
//     cannot log in afterwards; the first active token comes with a fresh set of backup codes;
//   - at most Options.MaxTokens tokens (active or pending) per user.
//
// Every change is logged (user, token id, what); never a code, secret, URI or backup code.
// Refusals are *refusal.Error with a sentence for the user.
package localenroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/verify"
)

// PendingTTL is how long a pending token waits for its first code, as at the registry.
const PendingTTL = 10 * time.Minute

// ProofService is the PAM service name under which proofs are logged and whose policy section
// (if any) gives the window; failures are the user's, shared with logins.
const ProofService = "totp-enroll"

// DefaultMaxTokens is the default bound on tokens per user, as at the registry.
const DefaultMaxTokens = 5

// Refusals a user sees.
var (
	errProofRequired = refused("a proof is required: a current code of one of your tokens, or a backup code")
	errNoBootstrap   = &refusal.Error{Kind: refusal.Refused,
		Message: "this node has no registry and uses no bootstrap codes: a first token needs no proof"}
)

func refused(msg string) *refusal.Error { return &refusal.Error{Kind: refusal.Refused, Message: msg} }

// Options configure an Authority. Zero values take the defaults named.
type Options struct {
	Config    *config.Config   // the node's config ([store], window, rate limits, issuer); required
	MaxTokens int              // DefaultMaxTokens
	Log       *slog.Logger     // slog.Default(); proofs are also logged like logins (verify)
	Now       func() time.Time // clock.Now
}

// Authority implements busapi.Enroller on the node's own store.
type Authority struct {
	o     Options
	admin *admin.Admin
	proof *verify.Verifier
	// mu makes check-then-write sequences (count then add, read then activate) atomic within
	// this process; other writers (totp-admin) are serialised by the store's file lock.
	mu sync.Mutex
	// proved holds "user/id" of the pending tokens begun with a proof. A pending token begun
	// without one (a first token) may finish only while the user has no active token; after a
	// restart every pending token counts as begun without a proof.
	proved map[string]bool
}

var _ busapi.Enroller = (*Authority)(nil)

// New returns an Authority for the store cfg names.
func New(o Options) (*Authority, error) {
	if o.Config == nil {
		return nil, errors.New("localenroll: no config")
	}
	if o.Config.Sync.Registry != "" {
		return nil, errors.New("localenroll: this node follows a registry, which is the enrollment authority")
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = DefaultMaxTokens
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = clock.Now
	}
	a := admin.New(o.Config)
	a.Now = o.Now
	v := verify.New(o.Config, o.Log)
	v.Now = o.Now
	return &Authority{o: o, admin: a, proof: v}, nil
}

// Init creates the node's tokens.db and state.db when they do not exist yet (root 0600 in the
// root 0700 store directory), so that logins on a fresh standalone node find an empty store
// (and enrollment grace applies) instead of a missing one.
func (a *Authority) Init() error {
	if err := securefile.MkdirAll(a.o.Config.Store.Dir, securefile.SecretDir); err != nil {
		return err
	}
	if err := a.admin.Tokens.Update(func(*store.TokensTx) error { return nil }); err != nil {
		return fmt.Errorf("create tokens.db: %w", err)
	}
	if err := a.admin.State.Update(func(*store.StateTx) error { return nil }); err != nil {
		return fmt.Errorf("create state.db: %w", err)
	}
	return nil
}

// expired says whether a pending token has outlived PendingTTL at now.
func expired(t token.Token, now time.Time) bool {
	return t.State == token.Pending && !now.Before(t.Created.Add(PendingTTL))
}

// userTokens reads user's tokens (none when the store does not exist yet).
func (a *Authority) userTokens(user string) ([]token.Token, error) {
	var toks []token.Token
	err := a.admin.Tokens.View(func(x *store.TokensTx) error {
		var err error
		toks, err = x.UserTokens(user)
		return err
	})
	if errors.Is(err, store.ErrNoStore) {
		return nil, nil
	}
	return toks, err
}

// checkProof runs the proof through the login rules; ok false comes with a *refusal.Error.
func (a *Authority) checkProof(user, proof, action string) error {
	if strings.TrimSpace(proof) == "" {
		return errProofRequired
	}
	ok, msg, err := a.proof.Proof(user, ProofService, proof)
	if err != nil {
		return err
	}
	if !ok {
		a.o.Log.Warn("enrollment proof refused", "user", user, "action", action)
		return refused("the proof was not accepted: " + msg)
	}
	a.o.Log.Info("enrollment proof accepted", "user", user, "action", action)
	return nil
}

// Begin starts a pending token for user; proof is needed when user has an active token.
func (a *Authority) Begin(_ context.Context, user, name, proof string) (registryapi.Enrollment, error) {
	if err := token.ValidUser(user); err != nil {
		return registryapi.Enrollment{}, &refusal.Error{Kind: refusal.Invalid, Message: "not a valid user name"}
	}
	if name != "" {
		if err := token.CheckName(name); err != nil {
			return registryapi.Enrollment{}, &refusal.Error{Kind: refusal.Invalid, Message: "name: 1 to 64 printable characters"}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.sweep(user); err != nil {
		return registryapi.Enrollment{}, err
	}
	toks, err := a.userTokens(user)
	if err != nil {
		return registryapi.Enrollment{}, err
	}
	active, disabled, counted := 0, 0, 0
	for _, t := range toks {
		switch t.State {
		case token.Active:
			active++
		case token.Disabled:
			disabled++
		}
		if t.State != token.Disabled {
			counted++
		}
	}
	if active == 0 && disabled > 0 {
		// An administrator disabled the user's tokens: a new "first" token without a proof would
		// undo that (totp-admin token enable, or reset, does).
		return registryapi.Enrollment{}, refused("your token is disabled; ask your administrators to enable it or to reset your second factor")
	}
	if active == 0 {
		// One pending first token at a time: a new first enrollment replaces the others.
		for _, t := range toks {
			if t.State != token.Pending {
				continue
			}
			if removed, err := a.admin.Cancel(user, t.ID); err != nil {
				return registryapi.Enrollment{}, err
			} else if removed {
				counted--
				a.o.Log.Info("pending token replaced by a new first enrollment", "user", user, "token", t.ID)
			}
		}
	}
	if counted >= a.o.MaxTokens {
		return registryapi.Enrollment{}, refused(fmt.Sprintf(
			"you have %d tokens (active or pending), the most this site allows; remove one first", counted))
	}
	if active > 0 {
		if err := a.checkProof(user, proof, "enroll.begin"); err != nil {
			return registryapi.Enrollment{}, err
		}
	}
	e, err := a.admin.AddToken(user, admin.AddOptions{Name: name})
	if errors.Is(err, totp.ErrKey) { // AddToken checks the key before writing anything
		return registryapi.Enrollment{}, &refusal.Error{Kind: refusal.Invalid,
			Message: "no otpauth URI can be made for this user name; ask your administrators"}
	}
	if err != nil {
		return registryapi.Enrollment{}, err
	}
	if active > 0 {
		if a.proved == nil {
			a.proved = map[string]bool{}
		}
		a.proved[user+"/"+e.Token.ID] = true
	}
	exp := e.Token.Created.Add(PendingTTL)
	a.o.Log.Info("enrollment begun", "user", user, "token", e.Token.ID, "name", e.Token.Name,
		"expires", exp.UTC().Format(time.RFC3339))
	return registryapi.Enrollment{ID: e.Token.ID, URI: e.Key.URI(), Expires: exp}, nil
}

// Finish checks the first code of user's pending token id.
func (a *Authority) Finish(_ context.Context, user, id, code string) (registryapi.FinishResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	toks, err := a.userTokens(user)
	if err != nil {
		return registryapi.FinishResult{}, err
	}
	var tok *token.Token
	first := true
	for i := range toks {
		if toks[i].ID == id {
			tok = &toks[i]
		} else if toks[i].State == token.Active {
			first = false
		}
	}
	switch {
	case tok == nil:
		return registryapi.FinishResult{}, &refusal.Error{Kind: refusal.NotFound,
			Message: fmt.Sprintf("no pending enrollment %q: it expired or was never started; begin again", clip(id))}
	case tok.State == token.Active:
		return registryapi.FinishResult{Status: "active"}, nil // finished already
	case tok.State != token.Pending:
		return registryapi.FinishResult{}, &refusal.Error{Kind: refusal.NotFound,
			Message: fmt.Sprintf("token %q is not pending", clip(id))}
	case expired(*tok, a.o.Now()):
		if _, err := a.admin.Cancel(user, id); err != nil {
			return registryapi.FinishResult{}, err
		}
		a.o.Log.Info("pending token expired", "user", user, "token", id)
		return registryapi.FinishResult{Status: "expired"}, nil
	}
	if !first && !a.proved[user+"/"+id] {
		// Begun as a first token (no proof); another token is active now, so adding this one
		// would skip the proof every further token needs.
		if _, err := a.admin.Cancel(user, id); err != nil {
			return registryapi.FinishResult{}, err
		}
		a.o.Log.Warn("pending first token cancelled: the user has an active token now", "user", user, "token", id)
		return registryapi.FinishResult{}, &refusal.Error{Kind: refusal.Conflict,
			Message: "another token of yours became active after this enrollment began; begin again, with a code from that token or a backup code"}
	}
	chk, err := a.admin.Confirm(user, id, code)
	if errors.Is(err, admin.ErrNotPending) {
		return registryapi.FinishResult{}, &refusal.Error{Kind: refusal.NotFound,
			Message: fmt.Sprintf("token %q is no longer pending", clip(id))}
	}
	if err != nil {
		return registryapi.FinishResult{}, err
	}
	switch chk.Outcome {
	case admin.Verified:
	case admin.ClockSkew:
		return registryapi.FinishResult{Status: "clock_skew", SkewS: chk.SkewSeconds}, nil
	default:
		return registryapi.FinishResult{Status: "wrong_code"}, nil
	}
	delete(a.proved, user+"/"+id)
	r := registryapi.FinishResult{Status: "active"}
	a.o.Log.Info("enrollment finished: token active", "user", user, "token", id)
	if first {
		codes, err := a.admin.NewBackupCodes(user)
		if err != nil {
			// The token is active; the user can ask for backup codes again with a code from it.
			a.o.Log.Error("first token active, but no backup codes were made", "user", user, "err", err)
			return r, nil
		}
		r.BackupCodes = codes
		a.o.Log.Info("backup codes created with the first token", "user", user, "count", len(codes))
	}
	return r, nil
}

// Rename renames user's token id (no proof: a name changes nothing at login).
func (a *Authority) Rename(_ context.Context, user, id, name string) error {
	if err := token.CheckName(name); err != nil {
		return &refusal.Error{Kind: refusal.Invalid, Message: "name: 1 to 64 printable characters"}
	}
	before, err := a.admin.RenameToken(user, id, name)
	if err != nil {
		return notFound(err, id)
	}
	a.o.Log.Info("token renamed", "user", user, "token", id, "from", before.Name, "to", name)
	return nil
}

// Remove removes user's token id: a pending one freely, any other with a proof.
func (a *Authority) Remove(_ context.Context, user, id, proof string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	toks, err := a.userTokens(user)
	if err != nil {
		return err
	}
	var tok *token.Token
	for i := range toks {
		if toks[i].ID == id {
			tok = &toks[i]
		}
	}
	if tok == nil {
		return notFound(store.ErrNotFound, id)
	}
	if tok.State == token.Pending {
		if _, err := a.admin.Cancel(user, id); err != nil {
			return err
		}
		a.o.Log.Info("pending token cancelled", "user", user, "token", id)
		return nil
	}
	if err := a.checkProof(user, proof, "enroll.remove"); err != nil {
		return err
	}
	if _, err := a.admin.RemoveToken(user, id); err != nil {
		return notFound(err, id)
	}
	a.o.Log.Info("token removed by the user", "user", user, "token", id)
	return nil
}

// BackupCodes replaces user's backup codes after a proof.
func (a *Authority) BackupCodes(_ context.Context, user, proof string) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkProof(user, proof, "backup-codes"); err != nil {
		return nil, err
	}
	codes, err := a.admin.NewBackupCodes(user)
	if err != nil {
		return nil, err
	}
	a.o.Log.Info("backup codes replaced by the user", "user", user, "count", len(codes))
	return codes, nil
}

// Bootstrap is refused: a standalone node has no mail and needs no bootstrap code.
func (a *Authority) Bootstrap(context.Context, string) (time.Time, error) {
	return time.Time{}, errNoBootstrap
}

// Sweep removes every expired pending token (of user, or of all users with "") and returns how
// many it removed.
func (a *Authority) Sweep(user string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sweep(user)
}

func (a *Authority) sweep(user string) (int, error) {
	now := a.o.Now()
	var gone []token.Token
	err := a.admin.Tokens.View(func(x *store.TokensTx) error {
		keep := func(t token.Token) error {
			if expired(t, now) {
				gone = append(gone, t)
			}
			return nil
		}
		if user == "" {
			return x.ForEachToken(keep)
		}
		toks, err := x.UserTokens(user)
		for _, t := range toks {
			keep(t)
		}
		return err
	})
	if errors.Is(err, store.ErrNoStore) || (err == nil && len(gone) == 0) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range gone {
		removed, err := a.admin.Cancel(t.User, t.ID) // still pending? (finished meanwhile: kept)
		if err != nil {
			return n, err
		}
		if removed {
			n++
			a.o.Log.Info("pending token expired", "user", t.User, "token", t.ID)
		}
	}
	return n, nil
}

// notFound turns store.ErrNotFound into a *refusal.Error; other errors pass.
func notFound(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoStore) {
		return &refusal.Error{Kind: refusal.NotFound, Message: fmt.Sprintf("you have no token %q", clip(id))}
	}
	return err
}

// clip bounds an id quoted back to the user.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return token.Clean(s)
}
