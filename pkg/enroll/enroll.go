// Package enroll holds the rules of self-service enrollment, once, for every authority that
// applies them: the central registry (its kv store), the standalone node (its tokens.db and
// state.db through pkg/localenroll) and whatever comes next (the web portal). An authority
// supplies a Store; this package decides (docs/enrollment.md):
//
//   - a first token needs no proof, or the mailed bootstrap code where the site uses them; every
//     further token, a removal of an active or disabled token and new backup codes need a proof:
//     a current code of an active token (window and replay as at login) or an unused backup code;
//   - failed proofs follow token.Limits (Rules.Limits): a back-off, then a lock that only an
//     administrator's unlock or reset ends; a code shown before its time (clock skew) is burned
//     and counted like a failed proof;
//   - failed portal sign-ins by code (Service.SignIn) follow the same rule in a record of their
//     own, which locks only sign-in by code; a back-off or lock of failed proofs and logins
//     refuses them too;
//   - a pending token grants nothing; it expires PendingTTL after it began; only one pending
//     first token exists at a time, and one begun without a proof cannot finish once the user
//     has an active token;
//   - a user whose tokens an administrator disabled, or whose last token was removed
//     (Tx.Enrolled), gets no new first token without the bootstrap code or an administrator's
//     reset;
//   - the finishing code's step is recorded with the activation, so it logs in nowhere; the
//     first active token comes with a new set of backup codes;
//   - at most Rules.MaxTokens tokens (active or pending) per user.
//
// Every change is audited through Tx.Audit in the transaction that makes it. Refusals are
// *refusal.Error with a sentence for the user; nothing here logs or returns a code, a secret or
// a backup code except to the user it belongs to.
package enroll

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Fixed rules.
const (
	PendingTTL     = 10 * time.Minute // a pending token waits this long for its first code
	BootstrapTTL   = 30 * time.Minute // a mailed bootstrap code works this long, once
	BootstrapEvery = time.Minute      // at most one bootstrap code per user per minute
	SkewHint       = 10               // steps: a finishing code this far off answers clock_skew
)

// Defaults of Rules.
const (
	DefaultMaxTokens = 5
	DefaultWindow    = 1
)

// Rules are an authority's settings of the rules.
type Rules struct {
	MaxTokens int          // tokens (active or pending) per user; DefaultMaxTokens when 0
	Window    int          // steps either side for proofs and finishing codes
	Limits    token.Limits // failed proofs (the registry's [enroll], a node's [rate_limit])
	Bootstrap bool         // a first token needs a mailed bootstrap code
	Issuer    string       // of the otpauth URI
}

// Pending is a pending token as a Store keeps it.
type Pending struct {
	Token   token.Token
	Expires time.Time
	// Proved says the enrollment began with a proof (a code of an active token or a backup
	// code). One begun without (a first token) may finish only while no token is active.
	Proved bool
}

// Store is where an authority keeps enrollment state.
type Store interface {
	// Change runs fn in one transaction on user's records: everything fn wrote is kept when fn
	// returns nil, nothing when it returns an error. It refuses users the authority does not
	// serve (a *refusal.Error). now is the instant of the change: the Tx stamps what it writes
	// (audit records, used codes) with it.
	Change(ctx context.Context, user string, now time.Time, fn func(Tx) error) error
}

// Tx is one user's records inside one transaction of a Store.
type Tx interface {
	// Tokens are the user's tokens that logins see (active and disabled).
	Tokens() ([]token.Token, error)
	PutToken(t token.Token) error
	DeleteToken(id string) error
	Pending() ([]Pending, error)
	PutPending(p Pending) error
	DeletePending(id string) error
	// LastStep is the last time step of token id accepted or burned; SetStep records one.
	LastStep(id string) (uint64, error)
	SetStep(id string, step uint64) error
	// Failures are the user's failed proofs, the record that logins count their wrong codes in
	// too (a lock there locks logins); SetFailures replaces it, the zero value clears it.
	Failures() (token.Failures, error)
	SetFailures(f token.Failures) error
	// SignInFailures are the user's failed portal sign-ins by code, a record of their own that
	// no login reads: whoever knows a user name can fill it, so it locks only sign-in by code.
	// SetSignInFailures replaces it, the zero value clears it. An authority without the portal
	// returns the zero value and refuses anything else.
	SignInFailures() (token.Failures, error)
	SetSignInFailures(f token.Failures) error
	// BackupCodes are the user's unused backup codes and passcodes.
	BackupCodes() ([]token.BackupCode, error)
	UseBackupCode(c token.BackupCode) error
	// ReplaceBackupCodes replaces the user's backup codes (and expired passcodes) by recs.
	ReplaceBackupCodes(recs []token.BackupCode) error
	// Bootstrap is the user's bootstrap code, if any.
	Bootstrap() (c token.BackupCode, ok bool, err error)
	PutBootstrap(c token.BackupCode) error
	UseBootstrap() error
	// Mail is the user's mail address ("" when none is known).
	Mail() string
	// Enrolled says whether the user carries token.Enrolled: their last token was removed and
	// no reset came since (a store marks it when it deletes the last token).
	Enrolled() (bool, error)
	// Audit records a change: action, target ("token/USER/ID" or "user/USER") and detail.
	Audit(action, target, detail string) error
}

// Service applies the rules to a Store.
type Service struct {
	Store Store
	Rules Rules
	Rand  io.Reader        // secrets, ids, backup codes
	Now   func() time.Time // clock.Now
	Log   *slog.Logger     // slog.Default()
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return clock.Now()
	}
	return s.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *Service) maxTokens() int {
	if s.Rules.MaxTokens <= 0 {
		return DefaultMaxTokens
	}
	return s.Rules.MaxTokens
}

// change runs fn in one transaction of s.Store. fn may set *refused: a refusal answered after
// the commit, for what must be kept although the request fails (a failed proof is counted).
func (s *Service) change(ctx context.Context, user string, fn func(tx Tx, now time.Time, refused *error) error) error {
	if err := token.ValidUser(user); err != nil {
		return refusal.New(refusal.Invalid, "not a valid user name")
	}
	var refused error
	now := s.now()
	err := s.Store.Change(ctx, user, now, func(tx Tx) error {
		refused = nil
		return fn(tx, now, &refused)
	})
	if err != nil {
		return err
	}
	return refused
}

// Refusals a user sees.
var (
	errProofRequired = refusal.New(refusal.Refused, "a proof is required: a current code of one of your tokens, or a backup code")
	errBootRequired  = refusal.New(refusal.Refused, "a bootstrap code is required for a first token: request one by mail first")
	errNoBootstrap   = refusal.New(refusal.Conflict, "this site does not use bootstrap codes: a first token needs no proof")
	errWrongProof    = refusal.New(refusal.Refused, "the proof was not accepted: use a current code of one of your tokens, or an unused backup code")
	errReplayedProof = refusal.New(refusal.Refused, "this code was already used; wait for the next one")
	errNeedsReset    = refusal.New(refusal.Conflict, "your token is disabled or was removed; ask your administrators to enable it or to reset your second factor")
	errLateFirst     = refusal.New(refusal.Conflict, "another token of yours became active after this enrollment began; "+
		"begin again, with a code from that token or a backup code")
)

// proofKinds says what a proof may be.
type proofKinds struct {
	codes     bool // a current code of an active token, a backup code or a passcode
	bootstrap bool // a bootstrap code
}

// record names a failure record that wrong answers count in.
type record int

const (
	proofRecord  record = iota // Tx.Failures: failed proofs, and wrong codes at logins
	signInRecord               // Tx.SignInFailures: failed portal sign-ins by code
)

func (r record) get(tx Tx) (token.Failures, error) {
	if r == signInRecord {
		return tx.SignInFailures()
	}
	return tx.Failures()
}

func (r record) set(tx Tx, f token.Failures) error {
	if r == signInRecord {
		return tx.SetSignInFailures(f)
	}
	return tx.SetFailures(f)
}

// words are what r counts, for the user and the log, and the audit action of a failure.
func (r record) words() (what, action string) {
	if r == signInRecord {
		return "sign-ins", "portal.signin_failed"
	}
	return "proofs", "enroll.proof_failed"
}

// locked refuses an answer while r (at f) is in its back-off or locked.
func (r record) locked(f token.Failures, now time.Time, l token.Limits) error {
	what, _ := r.words()
	locked := "your self-service changes are locked; ask your administrators to unlock you"
	if r == signInRecord {
		locked = "signing in to the portal with a code is locked; sign in another way, or ask your administrators to unlock you"
	}
	switch forGood, wait := f.Locked(now, l); {
	case forGood:
		return refusal.New(refusal.TooMany, "%d failed %s in a row: %s", f.Count, what, locked)
	case wait > 0:
		return &refusal.Error{Kind: refusal.TooMany, RetryAfter: wait,
			Message: fmt.Sprintf("too many failed %s; try again in %d minutes", what, int(wait.Minutes())+1)}
	}
	return nil
}

// proof checks answer for user. On success it records what the proof used up (the code's step,
// the backup or bootstrap code) and clears rec. A wrong answer is counted in rec and audited
// and sets *refused; a lock or a missing answer is returned as an error (nothing written). The
// proof record's lock or back-off refuses whatever rec is (a lock of logins is no lock of
// proofs or sign-ins that could be got round); the sign-in record's refuses only sign-ins.
func (s *Service) proof(tx Tx, user, answer string, kinds proofKinds, rec record, action string, now time.Time, refused *error) (bool, error) {
	f, err := tx.Failures()
	if err != nil {
		return false, err
	}
	if err := proofRecord.locked(f, now, s.Rules.Limits); err != nil {
		return false, err
	}
	if rec != proofRecord {
		if f, err = rec.get(tx); err != nil {
			return false, err
		}
		if err := rec.locked(f, now, s.Rules.Limits); err != nil {
			return false, err
		}
	}
	if strings.TrimSpace(answer) == "" {
		if kinds.codes {
			return false, errProofRequired
		}
		return false, errBootRequired
	}
	ok, what, replayed, err := s.match(tx, user, answer, kinds, action, now)
	if err != nil {
		return false, err
	}
	if ok {
		if err := rec.set(tx, token.Failures{}); err != nil {
			return false, err
		}
		s.log().Info("enrollment proof accepted", "user", user, "action", action, "proof", what)
		return true, nil
	}
	reason := "wrong proof"
	*refused = errWrongProof
	if replayed {
		reason, *refused = "replayed code", errReplayedProof
	}
	f, err = s.fail(tx, rec, now)
	if err != nil {
		return false, err
	}
	what, failed := rec.words()
	switch forGood, wait := f.Locked(now, s.Rules.Limits); {
	case forGood:
		reason += fmt.Sprintf("; %d failures: %s locked until an administrator unlocks the user", f.Count, what)
	case wait > 0:
		reason += fmt.Sprintf("; %d failures: %s refused until %s", f.Count, what, f.Until.UTC().Format(time.RFC3339))
	}
	s.log().Warn("enrollment proof refused", "user", user, "action", action, "reason", reason)
	return false, tx.Audit(failed, "user/"+user, action+": "+reason)
}

// match looks for what answer proves and uses it up; what names it for the log.
func (s *Service) match(tx Tx, user, answer string, kinds proofKinds, action string, now time.Time) (ok bool, what string, replayed bool, err error) {
	if kinds.codes {
		toks, err := tx.Tokens()
		if err != nil {
			return false, "", false, err
		}
		var lastErr error
		i, m := token.MatchAny(toks, token.Codes(toks, answer, false), now, s.Rules.Window, 0, func(id string) uint64 {
			last, err := tx.LastStep(id)
			if err != nil {
				lastErr = err
			}
			return last
		})
		if lastErr != nil {
			return false, "", false, lastErr
		}
		switch m.Status {
		case token.OK:
			t := toks[i]
			if err := tx.SetStep(t.ID, m.Step); err != nil {
				return false, "", false, err
			}
			// Nodes learn the step with the token, so the proof logs in nowhere.
			t.UsedStep = max(t.UsedStep, m.Step)
			return true, "code of token " + t.ID, false, tx.PutToken(t)
		case token.Replay:
			replayed = true
		}
		if norm, isCode := backupcode.Normalize(answer); isCode {
			codes, err := tx.BackupCodes()
			if err != nil {
				return false, "", false, err
			}
			for _, c := range codes {
				if c.Expired(now) || !backupcode.Match(norm, c) {
					continue
				}
				if err := tx.UseBackupCode(c); err != nil {
					return false, "", false, err
				}
				used := "backup_code_used"
				if !c.Expires.IsZero() {
					used = "passcode_used"
				}
				return true, "backup code " + c.ID, false, tx.Audit(used, "user/"+user, "id "+c.ID+" as proof for "+action)
			}
		}
	}
	if kinds.bootstrap {
		c, found, err := tx.Bootstrap()
		if err != nil {
			return false, "", false, err
		}
		if norm, isCode := backupcode.Normalize(answer); isCode && found && !c.Expired(now) && backupcode.Match(norm, c) {
			return true, "bootstrap code", false, tx.UseBootstrap()
		}
	}
	return false, "", replayed, nil
}

// fail counts one failure in rec.
func (s *Service) fail(tx Tx, rec record, now time.Time) (token.Failures, error) {
	f, err := rec.get(tx)
	if err != nil {
		return f, err
	}
	f, _ = f.Fail(now, s.Rules.Limits)
	return f, rec.set(tx, f)
}

// sweep removes the user's expired pending tokens and returns the rest.
func sweep(tx Tx, user string, now time.Time) ([]Pending, error) {
	pend, err := tx.Pending()
	if err != nil {
		return nil, err
	}
	kept := pend[:0]
	for _, p := range pend {
		if !Expired(p.Expires, now) {
			kept = append(kept, p)
			continue
		}
		if err := tx.DeletePending(p.Token.ID); err != nil {
			return nil, err
		}
		if err := tx.Audit("enroll.expired", "token/"+user+"/"+p.Token.ID, ""); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

// Sweep removes user's expired pending tokens and returns how many.
func (s *Service) Sweep(ctx context.Context, user string) (int, error) {
	n := 0
	err := s.change(ctx, user, func(tx Tx, now time.Time, _ *error) error {
		pend, err := tx.Pending()
		if err != nil {
			return err
		}
		kept, err := sweep(tx, user, now)
		n = len(pend) - len(kept)
		return err
	})
	return n, err
}

// Begin starts a pending token with a fresh secret for user, named name (a default name when
// ""). proof is what the rules ask for: a code or backup code when the user has an active
// token, the bootstrap code for a first token where the site uses them, else nothing.
func (s *Service) Begin(ctx context.Context, user, name, proof string) (registryapi.Enrollment, error) {
	return s.begin(ctx, user, name, proof, false)
}

// BeginSignedIn is Begin for a user whose identity a sign-in proved (a mailed sign-in code or
// the site's identity provider, at the web portal): the sign-in stands for the bootstrap code a
// first token would need, so a first token needs no further proof; every further token needs
// one as with Begin.
func (s *Service) BeginSignedIn(ctx context.Context, user, name, proof string) (registryapi.Enrollment, error) {
	return s.begin(ctx, user, name, proof, true)
}

// begin is Begin; identified says a sign-in proved the user's identity (BeginSignedIn).
func (s *Service) begin(ctx context.Context, user, name, proof string, identified bool) (registryapi.Enrollment, error) {
	var ans registryapi.Enrollment
	if name != "" && token.CheckName(name) != nil {
		return ans, refusal.New(refusal.Invalid, "name: 1 to 64 printable characters")
	}
	secret, err := totp.NewSecret(s.Rand, totp.DefaultSecretLen)
	if err != nil {
		return ans, err
	}
	err = s.change(ctx, user, func(tx Tx, now time.Time, refused *error) error {
		ans = registryapi.Enrollment{}
		pend, err := sweep(tx, user, now)
		if err != nil {
			return err
		}
		toks, err := tx.Tokens()
		if err != nil {
			return err
		}
		enrolled, err := tx.Enrolled()
		if err != nil {
			return err
		}
		active, disabled := 0, 0
		for _, t := range toks {
			switch t.State {
			case token.Active:
				active++
			case token.Disabled:
				disabled++
			}
		}
		first := active == 0
		if first && !s.Rules.Bootstrap && (disabled > 0 || (enrolled && !identified)) {
			// An administrator disabled the user's tokens, or the user removed their last one:
			// a new first token without a proof would undo that. A bootstrap code (where the
			// site uses them) or an administrator's reset does; a sign-in by mail or by the
			// identity provider stands for the bootstrap code only after the user's own removal:
			// control of a mailbox must not undo an administrator's disable where the site does
			// not trust mail for that.
			return errNeedsReset
		}
		taken := append([]token.Token(nil), toks...)
		counted := len(toks) - disabled
		var replaced []string // one pending first token at a time: a new one replaces the others
		for _, p := range pend {
			taken = append(taken, p.Token)
			if first && !p.Proved {
				replaced = append(replaced, p.Token.ID)
			} else {
				counted++
			}
		}
		if counted >= s.maxTokens() {
			return refusal.New(refusal.Conflict, "you have %d tokens (active or pending), the most this site allows; remove one first", counted)
		}
		kinds := proofKinds{codes: true}
		if first {
			kinds = proofKinds{bootstrap: s.Rules.Bootstrap && !identified}
		}
		if kinds.codes || kinds.bootstrap {
			if ok, err := s.proof(tx, user, proof, kinds, proofRecord, "enroll.begin", now, refused); !ok || err != nil {
				return err
			}
		}
		for _, id := range replaced {
			if err := tx.DeletePending(id); err != nil {
				return err
			}
			if err := tx.Audit("enroll.cancel", "token/"+user+"/"+id, "replaced by a new first enrollment"); err != nil {
				return err
			}
		}
		id, err := token.NewID(s.Rand, func(id string) bool { return token.HasID(taken, id) })
		if err != nil {
			return err
		}
		created := now.UTC().Truncate(time.Second)
		t := token.Token{User: user, ID: id, Name: name, Algorithm: totp.DefaultParams.Algorithm,
			Digits: totp.DefaultParams.Digits, Period: totp.DefaultParams.Period, Secret: secret,
			State: token.Pending, Created: created}
		if t.Name == "" {
			t.Name = token.DefaultName(taken)
		}
		if err := t.Validate(); err != nil {
			return refusal.New(refusal.Invalid, "%v", err)
		}
		if ans, err = s.enrollment(t, created.Add(PendingTTL)); err != nil {
			return err
		}
		if err := tx.PutPending(Pending{Token: t, Expires: ans.Expires, Proved: !first}); err != nil {
			return err
		}
		return tx.Audit("enroll.begin", "token/"+user+"/"+id, "name "+t.Name)
	})
	return ans, err
}

// enrollment is the answer to a Begin of pending token t: its otpauth URI and secret.
func (s *Service) enrollment(t token.Token, expires time.Time) (registryapi.Enrollment, error) {
	k := totp.Key{Issuer: s.Rules.Issuer, Account: t.User, Secret: t.Secret, Params: t.Params()}
	if err := k.Validate(); err != nil {
		return registryapi.Enrollment{}, refusal.New(refusal.Invalid, "no otpauth URI can be made for this user name; ask your administrators")
	}
	return registryapi.Enrollment{ID: t.ID, URI: k.URI(), Secret: totp.EncodeSecret(t.Secret), Expires: expires}, nil
}

// Enrollment is Begin's answer again for user's pending token id while it waits for its first
// code (a web page shown anew); it changes nothing. An expired or unknown one is NotFound.
func (s *Service) Enrollment(ctx context.Context, user, id string) (registryapi.Enrollment, error) {
	var ans registryapi.Enrollment
	err := s.change(ctx, user, func(tx Tx, now time.Time, _ *error) error {
		pend, err := tx.Pending()
		if err != nil {
			return err
		}
		for _, p := range pend {
			if p.Token.ID == id && !Expired(p.Expires, now) {
				ans, err = s.enrollment(p.Token, p.Expires)
				return err
			}
		}
		return refusal.New(refusal.NotFound, "no pending enrollment %q: it expired or was never started; begin again", clip(id))
	})
	return ans, err
}

// Finished is the outcome of Finish: the answer, and the token when it became active.
type Finished struct {
	registryapi.FinishResult
	Token token.Token // zero unless this call activated it
}

// Finish checks the first code of user's pending token id: a code of the window activates it.
func (s *Service) Finish(ctx context.Context, user, id, code string) (Finished, error) {
	var out Finished
	// Made before the transaction, which a store may run more than once.
	plain, recs, err := backupcode.New(s.Rand, user, backupcode.Count, s.now())
	if err != nil {
		return out, err
	}
	err = s.change(ctx, user, func(tx Tx, now time.Time, refused *error) error {
		out = Finished{}
		pend, err := tx.Pending()
		if err != nil {
			return err
		}
		toks, err := tx.Tokens()
		if err != nil {
			return err
		}
		var p *Pending
		for i := range pend {
			if pend[i].Token.ID == id {
				p = &pend[i]
			}
		}
		first := true
		for _, t := range toks {
			if t.ID == id && p == nil && t.State == token.Active {
				out.Status = registryapi.StatusActive // finished already
				return nil
			}
			first = first && t.State != token.Active
		}
		switch {
		case p == nil:
			return refusal.New(refusal.NotFound, "no pending enrollment %q: it expired or was never started; begin again", clip(id))
		case Expired(p.Expires, now):
			out.Status = registryapi.StatusExpired
			_, err := sweep(tx, user, now)
			return err
		}
		t := p.Token
		last, err := tx.LastStep(id)
		if err != nil {
			return err
		}
		m := FinishCode(&t, code, now, s.Rules.Window, last)
		if m.Status == token.OK || m.Status == token.Skew {
			if err := tx.SetStep(id, max(last, m.Step)); err != nil {
				return err
			}
		}
		switch m.Status {
		case token.Skew: // counted as a failed proof
			out.Status, out.SkewS = registryapi.StatusClockSkew, m.SkewSeconds
			_, err := s.fail(tx, proofRecord, now)
			return err
		case token.OK:
		default:
			out.Status = registryapi.StatusWrongCode
			return nil
		}
		if !first && !p.Proved {
			// Begun as a first token (no proof); another token is active now, so adding this
			// one would skip the proof every further token needs.
			if err := tx.DeletePending(id); err != nil {
				return err
			}
			*refused = errLateFirst
			return tx.Audit("enroll.cancel", "token/"+user+"/"+id, "begun without a proof; the user has an active token now")
		}
		t.State = token.Active
		t.UsedStep = m.Step // the finishing code logs in nowhere afterwards
		if err := tx.DeletePending(id); err != nil {
			return err
		}
		if err := tx.PutToken(t); err != nil {
			return err
		}
		if err := tx.Audit("enroll.finish", "token/"+user+"/"+id, "name "+t.Name); err != nil {
			return err
		}
		out.Status, out.Token = registryapi.StatusActive, t
		if first {
			if err := tx.ReplaceBackupCodes(recs); err != nil {
				return err
			}
			out.BackupCodes = plain
			return tx.Audit("backup-codes.create", "user/"+user, "with the first token")
		}
		return nil
	})
	if err == nil && out.Token.ID != "" {
		s.log().Info("enrollment finished: token active", "user", user, "token", id, "backup_codes", len(out.BackupCodes))
	}
	return out, err
}

// Rename renames user's token or pending token id (no proof: a name changes nothing at login).
// It returns the name before.
func (s *Service) Rename(ctx context.Context, user, id, name string) (string, error) {
	if token.CheckName(name) != nil {
		return "", refusal.New(refusal.Invalid, "name: 1 to 64 printable characters")
	}
	var old string
	err := s.change(ctx, user, func(tx Tx, _ time.Time, _ *error) error {
		p, t, err := find(tx, id)
		switch {
		case err != nil:
			return err
		case p != nil:
			old, p.Token.Name = p.Token.Name, name
			err = tx.PutPending(*p)
		default:
			old, t.Name = t.Name, name
			err = tx.PutToken(*t)
		}
		if err != nil {
			return err
		}
		return tx.Audit("enroll.rename", "token/"+user+"/"+id, "from "+old+" to "+name)
	})
	return old, err
}

// find returns user's pending token id or token id, or a NotFound refusal.
func find(tx Tx, id string) (*Pending, *token.Token, error) {
	pend, err := tx.Pending()
	if err != nil {
		return nil, nil, err
	}
	for i := range pend {
		if pend[i].Token.ID == id {
			return &pend[i], nil, nil
		}
	}
	toks, err := tx.Tokens()
	if err != nil {
		return nil, nil, err
	}
	for i := range toks {
		if toks[i].ID == id {
			return nil, &toks[i], nil
		}
	}
	return nil, nil, refusal.New(refusal.NotFound, "you have no token %q", clip(id))
}

// Removed says what Remove removed.
type Removed struct {
	Name    string
	Pending bool // a pending token (no notice needed: it never logged in)
}

// Remove removes user's token id: a pending one freely, any other with a proof.
func (s *Service) Remove(ctx context.Context, user, id, proof string) (Removed, error) {
	var r Removed
	err := s.change(ctx, user, func(tx Tx, now time.Time, refused *error) error {
		r = Removed{}
		p, t, err := find(tx, id)
		if err != nil {
			return err
		}
		if p != nil {
			r = Removed{Name: p.Token.Name, Pending: true}
			if err := tx.DeletePending(id); err != nil {
				return err
			}
			return tx.Audit("enroll.cancel", "token/"+user+"/"+id, "")
		}
		if ok, err := s.proof(tx, user, proof, proofKinds{codes: true}, proofRecord, "enroll.remove", now, refused); !ok || err != nil {
			return err
		}
		r.Name = t.Name
		if err := tx.DeleteToken(id); err != nil {
			return err
		}
		return tx.Audit("token.delete", "token/"+user+"/"+id, "by the user")
	})
	return r, err
}

// BackupCodes replaces user's backup codes after a proof and returns the new set.
func (s *Service) BackupCodes(ctx context.Context, user, proof string) ([]string, error) {
	plain, recs, err := backupcode.New(s.Rand, user, backupcode.Count, s.now())
	if err != nil {
		return nil, err
	}
	err = s.change(ctx, user, func(tx Tx, now time.Time, refused *error) error {
		if ok, err := s.proof(tx, user, proof, proofKinds{codes: true}, proofRecord, "backup-codes", now, refused); !ok || err != nil {
			return err
		}
		if err := tx.ReplaceBackupCodes(recs); err != nil {
			return err
		}
		return tx.Audit("backup-codes.create", "user/"+user, "by the user")
	})
	if err != nil {
		return nil, err
	}
	return plain, nil
}

// Bootstrap makes a one-time code for a first token, valid BootstrapTTL, and returns it with
// the address to mail it to; the caller mails it and shows it nowhere else.
func (s *Service) Bootstrap(ctx context.Context, user string) (code, to string, expires time.Time, err error) {
	if !s.Rules.Bootstrap {
		return "", "", time.Time{}, errNoBootstrap
	}
	return s.mailCode(ctx, user, true)
}

// SignInCode makes a one-time sign-in code (the bootstrap code's mechanism, whatever
// Rules.Bootstrap says; it replaces a bootstrap code not yet used), valid BootstrapTTL, at most
// one per user every BootstrapEvery, and returns it with the address to mail it to; the caller
// mails it and shows it nowhere else. SignIn with mailed set checks it.
func (s *Service) SignInCode(ctx context.Context, user string) (code, to string, expires time.Time, err error) {
	return s.mailCode(ctx, user, false)
}

// SignIn checks a sign-in answer of user and uses it up: the mailed sign-in code when mailed,
// else a current code of an active token or an unused backup code (the proof rules: window and
// replay). A wrong answer counts in the user's sign-in record (Tx.SignInFailures) under
// Rules.Limits, whose back-off and lock refuse only SignIn, and which a right answer clears; a
// back-off or lock of the user's proof record (failed proofs, wrong codes at logins) refuses
// SignIn too.
func (s *Service) SignIn(ctx context.Context, user, answer string, mailed bool) error {
	kinds := proofKinds{codes: !mailed, bootstrap: mailed}
	return s.change(ctx, user, func(tx Tx, now time.Time, refused *error) error {
		_, err := s.proof(tx, user, answer, kinds, signInRecord, "portal.signin", now, refused)
		return err
	})
}

// mailCode is Bootstrap (first: only for a user without an active token) and SignInCode.
func (s *Service) mailCode(ctx context.Context, user string, first bool) (code, to string, expires time.Time, err error) {
	plain, recs, err := backupcode.New(s.Rand, user, 1, s.now())
	if err != nil {
		return "", "", time.Time{}, err
	}
	c := recs[0]
	err = s.change(ctx, user, func(tx Tx, now time.Time, _ *error) error {
		if to = tx.Mail(); to == "" {
			return refusal.New(refusal.Conflict, "there is no mail address on record for you; ask the helpdesk to enroll you")
		}
		toks, err := tx.Tokens()
		if err != nil {
			return err
		}
		for _, t := range toks {
			if first && t.State == token.Active {
				return refusal.New(refusal.Conflict, "you already have a token: adding another needs a code from it or a backup code")
			}
		}
		if old, ok, err := tx.Bootstrap(); err != nil {
			return err
		} else if ok && now.Sub(old.Created) < BootstrapEvery {
			return &refusal.Error{Kind: refusal.TooMany, RetryAfter: BootstrapEvery - now.Sub(old.Created),
				Message: "a bootstrap code was mailed less than a minute ago; check your mail"}
		}
		c.Created, c.Expires = now.UTC(), now.Add(BootstrapTTL).UTC()
		if err := tx.PutBootstrap(c); err != nil {
			return err
		}
		if !first {
			return tx.Audit("portal.signin_code", "user/"+user, "code mailed")
		}
		return tx.Audit("enroll.bootstrap", "user/"+user, "code mailed")
	})
	if err != nil {
		return "", "", time.Time{}, err
	}
	return plain[0], to, c.Expires, nil
}

// clip bounds an id quoted back to the user.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return token.Clean(s)
}

// FinishCode judges a finishing code of pending token t at now, after last (the step last
// accepted or burned): token.OK within window steps of now, token.Skew (with the offset for the
// clock hint) up to SkewHint steps away, else a refusal; an answer that is no code of t's length
// is token.NoMatch. With OK and Skew the caller records m.Step before anything else: the code
// must never log in later, and a code shown before its time must never finish the enrollment
// when its time comes.
func FinishCode(t *token.Token, answer string, now time.Time, window int, last uint64) token.Result {
	c, isCode := totp.ParseCode(answer, t.Digits)
	if !isCode {
		return token.Result{Status: token.NoMatch}
	}
	return token.Match(t, c, now, window, SkewHint, last)
}

// Answers to a finishing code that did not finish, worded once for every front end.
const WrongCodeAdvice = "That code is not right. Type the code the app shows now, not the first one it showed."

// SkewAdvice is the answer to a finishing code skew seconds off (registryapi.StatusClockSkew).
func SkewAdvice(skew int) string {
	dir, n := "behind", skew
	if skew > 0 {
		dir = "ahead"
	}
	if n < 0 {
		n = -n
	}
	when := " now"
	if skew > 0 {
		// A code from ahead of time used up its step and every step before it.
		when = fmt.Sprintf(" in about %d seconds (the early code used up the codes before its time)", skew+30)
	}
	return fmt.Sprintf("That code belongs to another time: your phone's clock seems about %d seconds %s. "+
		"Let the phone set its time automatically, then type the code it shows%s.", n, dir, when)
}

// Expired says whether a pending token that expires at expires has expired at now.
func Expired(expires, now time.Time) bool { return !now.Before(expires) }
