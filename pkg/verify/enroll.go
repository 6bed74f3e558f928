package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// LoginEnroller starts and finishes a first token on behalf of a user: totp-syncd's root-only
// socket (rootsock.Client), whose answer carries the QR code already drawn.
type LoginEnroller interface {
	BeginFor(ctx context.Context, user, name string) (rootsock.Pending, error)
	FinishFor(ctx context.Context, user, id, code string) (rootsock.Finished, error)
}

// Limits of enrollment at login: the daemon must answer quickly or the login goes on under
// grace; the user gets a few tries at the first code.
const (
	EnrollBeginTimeout  = time.Second
	EnrollFinishTimeout = 2 * time.Second
	EnrollAttempts      = 3
)

const (
	enrollPrompt = "Code from the app to finish enrollment (Enter to skip): "
	backupPrompt = "Press Enter once the backup codes are stored safely: "
)

// enrollAtLogin offers a user in grace without a token to enroll one now (policy
// enroll_at_login). done is true when the login is decided here: the token is active (the
// typed code is the second factor), or the conversation broke. Otherwise the login goes on
// under grace and why says why enrollment did not happen, for the log line.
func (a *attempt) enrollAtLogin() (v protocol.Verdict, done bool, why string) {
	user := a.req.User
	ctx, cancel := context.WithTimeout(context.Background(), EnrollBeginTimeout)
	p, err := a.v.Enroll.BeginFor(ctx, user, "")
	cancel()
	if err != nil {
		return "", false, "enrollment at login unavailable: " + enrollErr(err)
	}
	key, err := totp.ParseURI(p.URI)
	if err != nil {
		// The URI is a secret: the reason does not show it.
		return "", false, "enrollment at login: totp-syncd sent an unusable otpauth URI"
	}
	a.info(fmt.Sprintf("Two-factor authentication becomes mandatory on %s. Enroll a token now: "+
		"scan this QR code with an authenticator app, or type the key below it.",
		a.pol.GraceUntil.UTC().Format("2006-01-02 15:04 MST")))
	if p.QR != "" {
		a.info(p.QR)
	}
	a.info(fmt.Sprintf("Key (base32): %s\nAccount %s, TOTP %s, %d digits, every %d seconds.",
		groups(totp.EncodeSecret(key.Secret)), key.Account, key.Params.Algorithm, key.Params.Digits, key.Params.Period))

	for tries := 0; tries < EnrollAttempts; {
		code, err := a.conv.Prompt(enrollPrompt, false)
		if err != nil {
			return a.log(protocol.AuthErr, "no_answer", "enrollment at login: "+err.Error(), p.ID), true, ""
		}
		code = strings.TrimSpace(code)
		if code == "" {
			a.info("Enrollment skipped: run `totp enroll` on a login node to enroll a token.")
			return "", false, "enrollment at login skipped by the user (token " + p.ID + " left pending)"
		}
		tries++
		ctx, cancel := context.WithTimeout(context.Background(), EnrollFinishTimeout)
		f, err := a.v.Enroll.FinishFor(ctx, user, p.ID, code)
		cancel()
		if err != nil {
			a.tell("Enrollment could not be finished now; try `totp enroll` later.")
			return "", false, "enrollment at login not finished: " + enrollErr(err)
		}
		switch f.Status {
		case "active":
			a.info("Your token is enrolled and active now.")
			reason := "first token enrolled and its code verified"
			if len(f.BackupCodes) > 0 {
				a.info("Backup codes, each works once instead of a code (keep them safe; they are not shown again):\n  " +
					strings.Join(f.BackupCodes, "\n  "))
				// sshd passes text to the client only with a prompt; without one, the codes would
				// reach only an interactive session's login messages.
				if _, err := a.conv.Prompt(backupPrompt, true); err != nil {
					reason += "; the backup codes may not have been seen (" + err.Error() + ")"
				}
			}
			return a.log(protocol.Success, "enrolled_at_login", reason, p.ID), true, ""
		case "clock_skew":
			dir := "ahead"
			if f.SkewS < 0 {
				dir = "behind"
			}
			msg := fmt.Sprintf("That code is from about %d seconds %s of this host's clock; check your phone's time settings.",
				abs(f.SkewS), dir)
			if f.SkewS > 0 { // its step and the ones before it are used up
				msg += fmt.Sprintf(" Codes work again in about %d seconds.", f.SkewS+30)
			}
			a.tell(msg)
		case "expired":
			a.tell("The enrollment expired; run `totp enroll` to start again.")
			return "", false, "enrollment at login expired (token " + p.ID + ")"
		default:
			a.tell("That code is not right; try again.")
		}
	}
	a.tell("Enrollment not finished: run `totp enroll` on a login node to try again.")
	return "", false, "enrollment at login: no right code in " + fmt.Sprint(EnrollAttempts) + " tries (token " + p.ID + " left pending)"
}

// enrollErr says why the daemon did not help, for the log: the error name and sentence (never a
// secret), or the connection error.
func enrollErr(err error) string {
	var be *rootsock.Error
	if errors.As(err, &be) {
		return be.Name + ": " + be.Message
	}
	return err.Error()
}

// groups spaces a base32 key in groups of four for typing.
func groups(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}
