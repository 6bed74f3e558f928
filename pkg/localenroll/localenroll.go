// Package localenroll is the enrollment authority of a standalone node: a node without a
// registry, where totp-syncd itself decides the self-service changes that the `totp` CLI and the
// PAM helper ask for over D-Bus, and writes them to the node's tokens.db and state.db
// (docs/enrollment.md, "Standalone mode").
//
// The rules are package enroll's, the registry's too; this package is their Store on the node's
// files:
//
//   - a pending token is a tokens.db record in state "pending", which logins never accept; it
//     expires enroll.PendingTTL after its creation (swept lazily and by Sweep);
//   - time steps, failures and used backup codes are the login path's, in state.db: a proof
//     burns its code for logins, and failed proofs count against the same back-off and lockout
//     as failed logins ([rate_limit]);
//   - a change is one transaction on each file, state.db committed first, so that a step
//     recorded (the finishing code's, a burned one) holds even if tokens.db then fails;
//   - whether a pending token began with a proof is kept in memory: after a restart every
//     pending token counts as begun without one (it may finish only while no token is active);
//   - the audit trail is the log: every change is logged (user, token id, what); never a code,
//     secret, URI or backup code. A standalone node has no mail, so no bootstrap codes.
package localenroll

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// ProofService is the PAM service whose policy section (if any) gives the window of proofs and
// finishing codes.
const ProofService = "totp-enroll"

// Options configure an Authority. Zero values take the defaults named.
type Options struct {
	Config    *config.Config   // the node's config ([store], window, rate limits, issuer); required
	MaxTokens int              // enroll.DefaultMaxTokens
	Log       *slog.Logger     // slog.Default()
	Now       func() time.Time // clock.Now
}

// Authority implements busapi.Enroller on the node's own store.
type Authority struct {
	svc *enroll.Service
	st  *nodeStore
}

var _ busapi.Enroller = (*Authority)(nil)

// New returns an Authority for the store cfg names.
func New(o Options) (*Authority, error) {
	if o.Config == nil {
		return nil, errors.New("localenroll: no config")
	}
	if len(o.Config.Sync.Registry) > 0 {
		return nil, errors.New("localenroll: this node follows a registry, which is the enrollment authority")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = clock.Now
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = enroll.DefaultMaxTokens
	}
	opts := store.Options{Dir: o.Config.Store.Dir, Timeout: o.Config.Store.OpenTimeout}
	st := &nodeStore{dir: o.Config.Store.Dir, tokens: store.NewTokens(opts), state: store.NewState(opts),
		log: o.Log, proved: map[string]bool{}}
	pol, _ := o.Config.For(ProofService, "") // without policy=, For always finds one
	return &Authority{st: st, svc: &enroll.Service{Store: st, Rand: rand.Reader, Now: o.Now, Log: o.Log,
		Rules: enroll.Rules{MaxTokens: o.MaxTokens, Window: pol.Window, Limits: o.Config.RateLimit.Limits(),
			Issuer: o.Config.Issuer}}}, nil
}

// Init creates the node's tokens.db and state.db when they do not exist yet (root 0600 in the
// root 0700 store directory), so that logins on a fresh standalone node find an empty store
// (and enrollment grace applies) instead of a missing one.
func (a *Authority) Init() error {
	if err := securefile.MkdirAll(a.st.dir, securefile.SecretDir); err != nil {
		return err
	}
	if err := a.st.tokens.Update(func(*store.TokensTx) error { return nil }); err != nil {
		return fmt.Errorf("create tokens.db: %w", err)
	}
	if err := a.st.state.Update(func(*store.StateTx) error { return nil }); err != nil {
		return fmt.Errorf("create state.db: %w", err)
	}
	return nil
}

// Begin starts a pending token for user.
func (a *Authority) Begin(ctx context.Context, user, name, proof string) (registryapi.Enrollment, error) {
	return a.svc.Begin(ctx, user, name, proof)
}

// Finish checks the first code of user's pending token id.
func (a *Authority) Finish(ctx context.Context, user, id, code string) (registryapi.FinishResult, error) {
	f, err := a.svc.Finish(ctx, user, id, code)
	return f.FinishResult, err
}

// Rename renames user's token id.
func (a *Authority) Rename(ctx context.Context, user, id, name string) error {
	_, err := a.svc.Rename(ctx, user, id, name)
	return err
}

// Remove removes user's token id.
func (a *Authority) Remove(ctx context.Context, user, id, proof string) error {
	_, err := a.svc.Remove(ctx, user, id, proof)
	return err
}

// BackupCodes replaces user's backup codes after a proof.
func (a *Authority) BackupCodes(ctx context.Context, user, proof string) ([]string, error) {
	return a.svc.BackupCodes(ctx, user, proof)
}

// Bootstrap is refused: a standalone node has no mail and needs no bootstrap code.
func (a *Authority) Bootstrap(ctx context.Context, user string) (time.Time, error) {
	_, _, exp, err := a.svc.Bootstrap(ctx, user)
	return exp, err
}

// Sweep removes every expired pending token (of user, or of all users with "") and returns how
// many it removed.
func (a *Authority) Sweep(user string) (int, error) {
	users := []string{user}
	if user == "" {
		var err error
		if users, err = a.st.pendingUsers(); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, u := range users {
		k, err := a.svc.Sweep(context.Background(), u)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// nodeStore is the node's tokens.db and state.db as an enroll.Store.
type nodeStore struct {
	dir    string
	tokens *store.Tokens
	state  *store.State
	log    *slog.Logger
	// mu makes a change atomic within this process; other writers (totp-admin) are serialised
	// by the files' locks. It also guards proved ("user/id" of the pending tokens begun with a
	// proof).
	mu     sync.Mutex
	proved map[string]bool
}

// pendingUsers lists the users that have a pending token.
func (n *nodeStore) pendingUsers() ([]string, error) {
	var out []string
	err := n.tokens.View(func(x *store.TokensTx) error {
		var err error
		out, err = x.PendingUsers()
		return err
	})
	if errors.Is(err, store.ErrNoStore) {
		return nil, nil
	}
	return out, err
}

func (n *nodeStore) Change(_ context.Context, user string, now time.Time, fn func(enroll.Tx) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := securefile.MkdirAll(n.dir, securefile.SecretDir); err != nil {
		return err
	}
	var tx *nodeTx
	err := n.tokens.Update(func(tt *store.TokensTx) error {
		return n.state.Update(func(st *store.StateTx) error {
			tx = &nodeTx{n: n, user: user, now: now, tokens: tt, state: st, proved: map[string]bool{}}
			return fn(tx)
		})
	})
	if err != nil {
		return err
	}
	for id, p := range tx.proved {
		if p {
			n.proved[user+"/"+id] = true
		} else {
			delete(n.proved, user+"/"+id)
		}
	}
	for _, a := range tx.audits {
		n.log.Info("enrollment: "+a[0], "target", a[1], "detail", a[2])
	}
	return nil
}

// nodeTx is one user's records in one transaction on each file.
type nodeTx struct {
	n      *nodeStore
	user   string
	now    time.Time
	tokens *store.TokensTx
	state  *store.StateTx
	proved map[string]bool // changes to n.proved, applied after the commit
	audits [][3]string     // logged after the commit
}

// all returns the user's tokens in tokens.db, pending ones included.
func (x *nodeTx) all() ([]token.Token, error) { return x.tokens.UserTokens(x.user) }

func (x *nodeTx) Tokens() ([]token.Token, error) {
	all, err := x.all()
	out := all[:0]
	for _, t := range all {
		if t.State != token.Pending {
			out = append(out, t)
		}
	}
	return out, err
}

func (x *nodeTx) PutToken(t token.Token) error { return x.tokens.PutToken(t) }
func (x *nodeTx) DeleteToken(id string) error  { return x.tokens.DeleteToken(x.user, id) }

func (x *nodeTx) Pending() ([]enroll.Pending, error) {
	all, err := x.all()
	var out []enroll.Pending
	for _, t := range all {
		if t.State == token.Pending {
			key := x.user + "/" + t.ID
			proved, changed := x.proved[t.ID]
			if !changed {
				proved = x.n.proved[key]
			}
			out = append(out, enroll.Pending{Token: t, Expires: t.Created.Add(enroll.PendingTTL), Proved: proved})
		}
	}
	return out, err
}

func (x *nodeTx) PutPending(p enroll.Pending) error {
	x.proved[p.Token.ID] = p.Proved
	return x.tokens.PutToken(p.Token)
}

func (x *nodeTx) DeletePending(id string) error {
	x.proved[id] = false
	return x.tokens.DeletePending(x.user, id, x.now) // a hardware token's seed is kept
}

func (x *nodeTx) LastStep(id string) (uint64, error) { return x.state.LastStep(x.user, id), nil }

func (x *nodeTx) SetStep(id string, step uint64) error {
	if step <= x.state.LastStep(x.user, id) {
		return nil
	}
	return x.state.SetLastStep(x.user, id, step)
}

func (x *nodeTx) Failures() (token.Failures, error) { return x.state.Failures(x.user), nil }

func (x *nodeTx) SetFailures(f token.Failures) error {
	if f == (token.Failures{}) {
		return x.state.ClearFailures(x.user)
	}
	return x.state.SetFailures(x.user, f)
}

func (x *nodeTx) BackupCodes() ([]token.BackupCode, error) {
	codes, err := x.tokens.BackupCodes(x.user)
	out := codes[:0]
	for _, c := range codes {
		if !x.state.BackupUsed(x.user, c.ID) {
			out = append(out, c)
		}
	}
	return out, err
}

func (x *nodeTx) UseBackupCode(c token.BackupCode) error {
	return x.state.UseBackup(x.user, c.ID, x.now)
}

func (x *nodeTx) ReplaceBackupCodes(recs []token.BackupCode) error {
	if err := x.tokens.ReplaceBackupCodes(x.user, recs); err != nil {
		return err
	}
	// The old used marks name the old records' ids: clear them with the records.
	return x.state.ForgetBackupUsed(x.user)
}

// A standalone node has no bootstrap codes (enroll.Rules.Bootstrap is false).
func (x *nodeTx) Bootstrap() (token.BackupCode, bool, error) { return token.BackupCode{}, false, nil }
func (x *nodeTx) PutBootstrap(token.BackupCode) error        { return errNoBootstrap }
func (x *nodeTx) UseBootstrap() error                        { return errNoBootstrap }
func (x *nodeTx) Mail() string                               { return "" }

var errNoBootstrap = errors.New("a standalone node keeps no bootstrap codes")

// A standalone node serves no portal, so nothing signs in there: no sign-in failures.
func (x *nodeTx) SignInFailures() (token.Failures, error) { return token.Failures{}, nil }

func (x *nodeTx) SetSignInFailures(f token.Failures) error {
	if f == (token.Failures{}) {
		return nil
	}
	return errNoSignIn
}

var errNoSignIn = errors.New("a standalone node serves no portal sign-in")

func (x *nodeTx) Enrolled() (bool, error) { return x.tokens.Enrolled(x.user), nil }

func (x *nodeTx) Audit(action, target, detail string) error {
	x.audits = append(x.audits, [3]string{action, target, detail})
	return nil
}
