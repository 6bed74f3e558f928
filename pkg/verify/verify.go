package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Conversation is what the verifier may do with the user; protocol.Conn implements it.
type Conversation interface {
	Prompt(text string, echo bool) (string, error)
	Info(text string) error
	Error(text string) error
	SetAuthtok(password string) error
}

// Messages the user sees. Short, plain, and never a code or a secret.
const (
	msgFailed       = "Verification failed."
	msgUnavailable  = "Two-factor authentication is unavailable on this host right now; try again later."
	msgMisconfig    = "Two-factor authentication is misconfigured on this host."
	msgNoToken      = "No two-factor token is enrolled for your account."
	msgNotActivated = "Your token is not activated yet: finish its enrollment by entering a code from it."
	msgDisabled     = "Your two-factor token is disabled."
	msgRemoved      = "You have no active two-factor token any more."
	msgReplay       = "That code has already been used; wait for the next one."
	msgLocked       = "Too many failed codes; two-factor login is locked for your account."
	msgTooLong      = "The answer is too long."
	msgNoClaim      = "Your code cannot be confirmed with the central registry right now; try again shortly."
)

// Verifier decides authentications for one node. It keeps no database open.
type Verifier struct {
	Config *config.Config
	Log    *slog.Logger
	Now    func() time.Time
	// ProcRoot is where session leaders' start times are read (/proc); tests may change it.
	ProcRoot string
	// Enroll is totp-syncd for enrollment at login (policy enroll_at_login); nil: not offered.
	Enroll LoginEnroller
	// Claims is totp-syncd's way to the registry (claim.go); nil in the helper, which decides
	// every claim offline.
	Claims Claimer
	// Stores keeps the store's files open between logins (totp-syncd); nil: each login opens
	// them per transaction (the helper).
	Stores *store.Resident
}

// New returns a verifier with the real clock (clock.Now).
func New(cfg *config.Config, log *slog.Logger) *Verifier {
	return &Verifier{Config: cfg, Log: log, Now: clock.Now, ProcRoot: "/proc"}
}

// attempt carries one authentication through the steps.
type attempt struct {
	v    *Verifier
	req  *protocol.Request
	conv Conversation
	pol  config.Policy
	now  time.Time
}

// Authenticate runs one authentication and returns the verdict for the module.
func (v *Verifier) Authenticate(req *protocol.Request, conv Conversation) protocol.Verdict {
	a := &attempt{v: v, req: req, conv: conv, now: v.Now()}
	pol, err := v.Config.For(req.Service, req.Policy)
	if err != nil {
		a.tell(msgMisconfig)
		return a.log(protocol.SystemErr, "misconfigured", err.Error(), "")
	}
	a.pol = pol
	return a.run()
}

func (a *attempt) run() protocol.Verdict {
	req, pol := a.req, &a.pol
	if !req.UserKnown {
		// Prompted like anyone else, so the exchange does not say whether the account exists.
		if _, err := a.conv.Prompt(a.prompt(), false); err != nil {
			return a.log(protocol.UserUnknown, "unknown_user", "user unknown to NSS; no answer", "")
		}
		a.tell(msgFailed)
		return a.log(protocol.UserUnknown, "unknown_user", "user unknown to NSS", "")
	}
	switch {
	case pol.Mode == config.ModeOff:
		return a.log(protocol.Success, "policy_off", "mode is off", "")
	case slices.Contains(pol.ExemptUsers, req.User):
		return a.log(protocol.Success, "exempt_user", "user is exempt", "")
	}
	for _, g := range req.Groups {
		if slices.Contains(pol.ExemptGroups, g) {
			return a.log(protocol.Success, "exempt_group", "member of exempt group "+g, "")
		}
	}
	if n, ok := pol.ExemptAddr(req.RHost); ok {
		return a.log(protocol.Success, "exempt_network", "client address in exempt network "+n, "")
	}

	opts := store.Options{Dir: a.v.Config.Store.Dir, Timeout: a.v.Config.Store.OpenTimeout}
	data, err := a.v.Stores.Tokens(opts).ReadUser(req.User)
	if err != nil {
		a.tell(msgUnavailable)
		return a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), "")
	}
	if v, stale := a.stale(data.Meta); stale {
		if v != "" {
			a.tell(msgUnavailable)
			return a.log(protocol.AuthinfoUnavail, "store_stale", v, "")
		}
	}
	active, pending, disabled := 0, 0, 0
	for _, t := range data.Tokens {
		switch t.State {
		case token.Active:
			active++
		case token.Pending:
			pending++
		case token.Disabled:
			disabled++
		}
	}
	if active == 0 && disabled > 0 && len(data.Backup) == 0 {
		// A user who had a token is never in enrollment grace: a disabled token keeps them out
		// until an administrator enables it or resets the user.
		a.tell(msgDisabled + a.contact())
		return a.log(protocol.AuthErr, "token_disabled", fmt.Sprintf("no active token, %d disabled", disabled), "")
	}
	if active == 0 && data.Enrolled && len(data.Backup) == 0 {
		// Nor is a user whose last token was removed: a new first token needs an
		// administrator's reset (or, at a registry that uses them, a bootstrap code).
		a.tell(msgRemoved + a.contact())
		return a.log(protocol.AuthErr, "token_removed", fmt.Sprintf("no active token (%d pending); the user had one before", pending), "")
	}
	if active == 0 && len(data.Backup) == 0 {
		offer := pol.InGrace(a.now) && pol.EnrollAtLogin && a.v.Enroll != nil
		if pending > 0 && !offer {
			a.tell(msgNotActivated)
		}
		if pol.InGrace(a.now) {
			why := ""
			if offer {
				var v protocol.Verdict
				var done bool
				if v, done, why = a.enrollAtLogin(); done {
					return v
				}
				why = "; " + why
			}
			a.info(fmt.Sprintf("Two-factor authentication becomes mandatory on %s: enroll a token before then.",
				pol.GraceUntil.UTC().Format("2006-01-02 15:04 MST")))
			return a.log(protocol.Success, "enrollment_grace", "no active token; grace until "+
				pol.GraceUntil.UTC().Format(time.RFC3339)+why, "")
		}
		a.tell(msgNoToken + a.contact())
		return a.log(protocol.AuthErr, "no_token", fmt.Sprintf("no active token (%d pending)", pending), "")
	}

	state := a.v.Stores.State(opts)
	sshKey, freshKey := a.sshGraceKey(), a.freshnessKey()
	var fails store.Failures
	var graced, fresh bool
	err = state.View(func(x *store.StateTx) error {
		fails = a.failures(x, &data)
		graced = sshKey != "" && x.Grace(req.User, "ssh", sshKey, a.now)
		fresh = freshKey != "" && x.Grace(req.User, freshKind(req.Service), freshKey, a.now)
		return nil
	})
	if err != nil {
		a.tell(msgUnavailable)
		return a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), "")
	}
	if msg, locked := a.locked(fails); locked {
		a.tell(msg)
		return a.log(protocol.MaxTries, "locked_out", fmt.Sprintf("%d consecutive failures", fails.Count), "")
	}
	if graced {
		return a.log(protocol.Success, "ssh_grace", "same client address and SSH key within ssh_grace", "")
	}
	if fresh {
		return a.log(protocol.Success, "session_fresh", "code verified in this session within sudo_freshness", "")
	}

	answer, err := a.conv.Prompt(a.prompt(), false)
	if err != nil {
		return a.log(protocol.AuthErr, "no_answer", err.Error(), "")
	}
	return a.check(state, data, answer, sshKey, freshKey)
}

// judgement is what an answer is worth against state.db at one moment, before anything is
// written: a token's code (token.Result), else a backup code or passcode.
type judgement struct {
	i       int // the token matched (m.Status != NoMatch)
	m       token.Result
	backup  *token.BackupCode // a backup code or passcode that may be accepted
	backupW string            // why a backup code that matched may not ("" when none matched)
}

// judge matches the answer against the user's tokens and backup codes in x.
func (a *attempt) judge(x *store.StateTx, data *store.UserData, codes map[int]string, backupNorm string, isBackup bool) judgement {
	user := a.req.User
	i, m := token.MatchAny(data.Tokens, codes, a.now, a.pol.Window, a.pol.SkewHintSteps, func(id string) uint64 {
		return x.LastStep(user, id)
	})
	j := judgement{i: i, m: m}
	if m.Status == token.OK || !isBackup {
		return j
	}
	for k := range data.Backup {
		rec := &data.Backup[k]
		if !backupcode.Match(backupNorm, *rec) {
			continue
		}
		switch {
		case rec.Expired(a.now):
			j.backupW = "one-time passcode expired"
		case x.BackupUsed(user, rec.ID):
			j.backupW = "backup code already used"
		default:
			j.backup = rec
		}
		break
	}
	return j
}

// claimID is the (token, step) an accepting judgement claims at the registry; ok is false when
// the judgement accepts nothing.
func (j judgement) claimID(tokens []token.Token) (id string, step uint64, ok bool) {
	switch {
	case j.m.Status == token.OK:
		return tokens[j.i].ID, j.m.Step, true
	case j.backup != nil:
		return token.ClaimID(j.backup.ID), 1, true
	}
	return "", 0, false
}

// check judges the answer inside one state.db write transaction. On a node that syncs from a
// registry, an accepting answer is first claimed there (claim.go), between a read-only look and
// that transaction, so the network round trip holds no lock.
func (a *attempt) check(state *store.State, data store.UserData, answer, sshKey, freshKey string) protocol.Verdict {
	user := a.req.User
	var (
		verdict = protocol.AuthErr
		outcome = "wrong_code"
		reason  = "no token matched"
		tokenID string
		msg     = msgFailed
	)
	switch {
	case len(answer) > protocol.MaxAnswer:
		// Still a guess, so still counted below; nothing of it is checked.
		answer, outcome, reason, msg = "", "invalid_answer", "answer too long", msgTooLong
	case strings.TrimSpace(answer) == "":
		// Pressing Enter guesses nothing: refused, not counted.
		a.tell(msgFailed)
		return a.log(protocol.AuthErr, "empty_answer", "empty answer", "")
	}
	codes := a.candidates(data.Tokens, &answer)
	backupNorm, isBackup := backupcode.Normalize(answer)
	if a.pol.PasswordAndCode {
		isBackup = false // the answer is password+code; backup codes go at the code prompt
	}
	claim, err := a.claimFirst(state, &data, codes, backupNorm, isBackup)
	if err != nil {
		a.tell(msgUnavailable)
		return a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), "")
	}
	events := false
	err = state.Update(func(x *store.StateTx) error {
		events = false
		fails := a.failures(x, &data)
		if m, locked := a.locked(fails); locked { // a concurrent login may have locked it since
			verdict, outcome, reason, msg = protocol.MaxTries, "locked_out", "locked while prompting", m
			return nil
		}
		j := a.judge(x, &data, codes, backupNorm, isBackup)
		if id, step, ok := j.claimID(data.Tokens); ok && a.claims() {
			// The claim decides what the acceptance becomes; nothing else of this answer does.
			tokenID = id
			v, o, r, m, accept, err := a.settle(x, claim, id, step, &j, data.Tokens)
			verdict, outcome, reason, msg = v, o, r, m
			if err != nil || !accept {
				return err
			}
		}
		switch m := j.m; {
		case m.Status == token.OK:
			tokenID = data.Tokens[j.i].ID
			if err := x.SetLastStep(user, tokenID, m.Step); err != nil {
				return err
			}
			verdict, outcome, reason, msg = protocol.Success, "success", "code verified", ""
			switch {
			case claim.granted:
				reason = "code verified and claimed at the registry"
			case claim.offline():
				reason = "code verified on this node's record alone: " + claim.why
			}
		case j.backup != nil:
			rec := j.backup
			if err := x.UseBackup(user, rec.ID, a.now); err != nil {
				return err
			}
			left := 0
			for _, r := range data.Backup {
				if r.ID != rec.ID && !x.BackupUsed(user, r.ID) && r.Expires.IsZero() {
					left++
				}
			}
			tokenID = "backup:" + rec.ID
			verdict, outcome, reason = protocol.Success, "backup_code", "backup code accepted"
			msg = fmt.Sprintf("Backup code accepted; %d left.", left)
			if !rec.Expires.IsZero() {
				tokenID, outcome, reason = "passcode:"+rec.ID, "passcode", "one-time passcode accepted"
				msg = "One-time passcode accepted: enroll a token now, it works only once."
			}
		case m.Status == token.Replay:
			// A replay is no guess at the secret: refused, not counted.
			tokenID = data.Tokens[j.i].ID
			verdict, outcome, reason, msg = protocol.AuthErr, "replay", "code of an already used time step", msgReplay
			return nil
		case m.Status == token.Skew:
			// Refused and counted; its step is burned, so that the code, shown before its time,
			// is never accepted when its time comes.
			tokenID = data.Tokens[j.i].ID
			if m.Step > x.LastStep(user, tokenID) {
				if err := x.SetLastStep(user, tokenID, m.Step); err != nil {
					return err
				}
			}
			dir := "ahead"
			if m.SkewSeconds < 0 {
				dir = "behind"
			}
			secs := abs(m.SkewSeconds)
			reason = fmt.Sprintf("code from %d s %s of the node's clock", secs, dir)
			outcome = "clock_skew"
			msg = fmt.Sprintf("%s Your device's clock seems about %d seconds %s; check its time settings.",
				msgFailed, secs, dir)
		case j.backupW != "":
			reason = j.backupW
		}
		if verdict != protocol.Success {
			events = a.claims()
			if events {
				if err := x.AddEvent(token.LoginEvent{Kind: token.EventFailure, User: user, At: a.now.UTC()}); err != nil {
					return err
				}
			}
			return x.SetFailures(user, a.fail(fails, &msg))
		}
		if claim.offline() {
			// Accepted without the registry: it learns of the claim when it is back.
			id, step, _ := j.claimID(data.Tokens)
			events = true
			if err := x.AddEvent(token.LoginEvent{Kind: token.EventClaim, User: user, Token: id,
				Step: step, At: a.now.UTC(), Offline: true}); err != nil {
				return err
			}
		}
		if err := x.SetFailures(user, token.Cleared(a.now)); err != nil {
			return err
		}
		if sshKey != "" && a.pol.SSHGrace > 0 {
			if err := x.SetGrace(user, "ssh", sshKey, a.now.Add(a.pol.SSHGrace), a.now); err != nil {
				return err
			}
		}
		if freshKey != "" && a.pol.SudoFreshness > 0 {
			return x.SetGrace(user, freshKind(a.req.Service), freshKey, a.now.Add(a.pol.SudoFreshness), a.now)
		}
		return nil
	})
	if err != nil {
		a.tell(msgUnavailable)
		return a.log(protocol.AuthinfoUnavail, "store_unavailable", err.Error(), tokenID)
	}
	if events && a.v.Claims != nil {
		a.v.Claims.Kick()
	}
	if msg != "" {
		if verdict == protocol.Success {
			a.info(msg)
		} else {
			a.tell(msg)
		}
	}
	return a.log(verdict, outcome, reason, tokenID)
}

// stale checks the node's copy against [sync] max_offline. It reports whether the copy is stale,
// and a reason when policy says to deny; serving from a stale copy is logged loudly here.
func (a *attempt) stale(m store.Meta) (string, bool) {
	s := a.v.Config.Sync
	if len(s.Registry) == 0 || s.MaxOffline <= 0 {
		return "", false
	}
	age := a.now.Sub(m.LastContact)
	if !m.LastContact.IsZero() && age <= s.MaxOffline {
		return "", false
	}
	why := fmt.Sprintf("registry last heard from %s ago (max_offline %s)", age.Round(time.Second), s.MaxOffline)
	if m.LastContact.IsZero() {
		why = "registry never heard from"
	}
	if s.Offline == config.OfflineDeny {
		return why, true
	}
	a.v.Log.Error("token store is stale; serving from the last copy", "user", a.req.User,
		"service", a.req.Service, "reason", why)
	return "", true
}

// candidates returns the TOTP codes worth checking, by digit count. With password_and_code the
// trailing digits are split off and the rest is handed on as PAM_AUTHTOK.
func (a *attempt) candidates(tokens []token.Token, answer *string) map[int]string {
	codes := token.Codes(tokens, *answer, a.pol.PasswordAndCode)
	if a.pol.PasswordAndCode && len(*answer) > 0 {
		// Hand on the password as split for the most common code length, even when the code turns
		// out wrong, so pam_unix does not prompt a single-prompt client again.
		for _, d := range []int{6, 8, 7} {
			if _, ok := codes[d]; ok {
				_ = a.conv.SetAuthtok((*answer)[:len(*answer)-d])
				break
			}
		}
	}
	return codes
}

// limits is the failure rule of the config ([rate_limit]).
func (a *attempt) limits() token.Limits { return a.v.Config.RateLimit.Limits() }

// fail counts one failure and extends the back-off; msg gains the wait when one starts.
func (a *attempt) fail(f store.Failures, msg *string) store.Failures {
	f, d := f.Fail(a.now, a.limits())
	switch {
	case f.Count >= a.v.Config.RateLimit.LockoutAfter:
		*msg = strings.TrimSpace(*msg + " " + msgLocked + a.contact())
	case d > 0:
		*msg = strings.TrimSpace(*msg + " Too many failed codes; try again in " + human(d) + ".")
	}
	return f
}

// locked says whether failures keep the user from being asked, and what to tell them.
func (a *attempt) locked(f store.Failures) (string, bool) {
	switch forGood, wait := f.Locked(a.now, a.limits()); {
	case forGood:
		return msgLocked + a.contact(), true
	case wait > 0:
		return "Too many failed codes; try again in " + human(wait) + ".", true
	}
	return "", false
}

func (a *attempt) prompt() string {
	if a.pol.PasswordAndCode && a.pol.Prompt == config.Default().Prompt {
		return "Password and verification code: "
	}
	return a.pol.Prompt
}

func (a *attempt) contact() string {
	if a.pol.Contact == "" {
		return ""
	}
	return " Contact " + a.pol.Contact + "."
}

func (a *attempt) tell(msg string) { _ = a.conv.Error(msg) }
func (a *attempt) info(msg string) { _ = a.conv.Info(msg) }

// log writes the one log line of this authentication and returns the verdict.
func (a *attempt) log(v protocol.Verdict, outcome, reason, tokenID string) protocol.Verdict {
	level := slog.LevelInfo
	if v != protocol.Success {
		level = slog.LevelWarn
	}
	if v == protocol.SystemErr || v == protocol.AuthinfoUnavail {
		level = slog.LevelError
	}
	a.v.Log.Log(context.Background(), level, "authentication "+string(v),
		"user", a.req.User, "service", a.req.Service, "rhost", a.req.RHost, "tty", a.req.TTY,
		"token", tokenID, "outcome", outcome, "reason", reason)
	return v
}

// sshGraceKey is a digest of user, client address and the SSH public keys sshd reports
// (SSH_AUTH_INFO_0, "publickey <type> <base64>" lines). Empty when any of them is missing.
func (a *attempt) sshGraceKey() string {
	if a.pol.SSHGrace <= 0 || a.req.RHost == "" {
		return ""
	}
	var keys []string
	for _, line := range strings.Split(a.req.SSHAuthInfo, "\n") {
		if strings.HasPrefix(line, "publickey ") {
			keys = append(keys, strings.TrimSpace(line))
		}
	}
	if len(keys) == 0 {
		return ""
	}
	return digest(a.req.User, a.req.RHost, strings.Join(keys, "\n"))
}

// freshnessKey names the login session: the audit session id when pam_loginuid set one, else
// the session leader's pid and start time with the tty (what sudo's own timestamps use).
func (a *attempt) freshnessKey() string {
	if a.pol.SudoFreshness <= 0 {
		return ""
	}
	if s := a.req.AuditSession; s != "" && s != "4294967295" {
		return digest(a.req.User, "audit", s)
	}
	if a.req.SID == "" || a.req.SID == "0" {
		return ""
	}
	start := a.v.leaderStart(a.req.SID)
	if start == "" {
		return ""
	}
	return digest(a.req.User, "sid", a.req.SID, start, a.req.TTY)
}

// leaderStart reads field 22 (start time in clock ticks) of /proc/SID/stat.
func (v *Verifier) leaderStart(sid string) string {
	for _, c := range sid {
		if c < '0' || c > '9' {
			return ""
		}
	}
	b, err := os.ReadFile(v.ProcRoot + "/" + sid + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses: count from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19] // fields 3.. start at index 0, so field 22 is index 19
}

func freshKind(service string) string { return "fresh:" + service }

func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		s := int((d + time.Second - 1) / time.Second)
		if s == 1 {
			return "1 second"
		}
		return fmt.Sprintf("%d seconds", s)
	default:
		m := int((d + time.Minute - 1) / time.Minute)
		if m == 1 {
			return "1 minute"
		}
		return fmt.Sprintf("%d minutes", m)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
