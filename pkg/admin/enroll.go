package admin

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// AddOptions describe a new token.
type AddOptions struct {
	// Name is the token's name; empty means "token-N".
	Name string
	// Secret is the shared secret; nil means a fresh 160-bit secret from Admin.Rand.
	Secret []byte
	// Params are the code parameters (zero means totp.DefaultParams).
	Params totp.Params
	// Active writes the token active at once, without a verified code (scripted provisioning).
	Active bool
}

// Enrollment is a token just written, with what its owner needs to set up a device.
type Enrollment struct {
	Token token.Token
	Key   totp.Key
	// HasBackupCodes says whether the user already had backup codes.
	HasBackupCodes bool
}

// AddToken writes a new token for user: pending until Confirm verifies a code from it, or active
// at once with o.Active.
func (a *Admin) AddToken(user string, o AddOptions) (*Enrollment, error) {
	if err := token.ValidUser(user); err != nil {
		return nil, err
	}
	if o.Name != "" {
		if err := token.CheckName(o.Name); err != nil {
			return nil, err
		}
	}
	if o.Params == (totp.Params{}) {
		o.Params = totp.DefaultParams
	}
	if err := o.Params.Validate(); err != nil {
		return nil, err
	}
	secret := o.Secret
	if secret == nil {
		var err error
		if secret, err = totp.NewSecret(a.Rand, totp.DefaultSecretLen); err != nil {
			return nil, err
		}
	}
	key := totp.Key{Issuer: a.Config.Issuer, Account: user, Secret: secret, Params: o.Params}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if err := a.prepare(); err != nil {
		return nil, err
	}
	e := &Enrollment{Key: key}
	now := a.Now().UTC().Truncate(time.Second)
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		if err != nil {
			return err
		}
		codes, err := x.BackupCodes(user)
		if err != nil {
			return err
		}
		e.HasBackupCodes = len(codes) > 0
		id, err := token.NewID(a.Rand, func(id string) bool {
			_, err := x.Token(user, id)
			return err == nil
		})
		if err != nil {
			return err
		}
		name := o.Name
		if name == "" {
			name = token.DefaultName(toks)
		}
		state := token.Pending
		if o.Active {
			state = token.Active
		}
		e.Token = token.Token{
			User: user, ID: id, Name: name,
			Algorithm: o.Params.Algorithm, Digits: o.Params.Digits, Period: o.Params.Period,
			Secret: secret, State: state, Created: now,
		}
		return x.PutToken(e.Token)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Outcome is the result of checking one first code.
type Outcome int

// Outcomes of Confirm.
const (
	Verified  Outcome = iota // the code matched: the token is active
	NotACode                 // the answer is not a code of the token's length
	WrongCode                // no step near now matches
	ClockSkew                // a step 2..10 steps from now matches: the device clock is off
)

// CodeCheck is what Confirm found.
type CodeCheck struct {
	Outcome Outcome
	// SkewSeconds, with ClockSkew, is how far the device seems ahead (+) or behind (-).
	SkewSeconds int
}

// Confirm checks a first code for the pending token user/id with token.Match. A code from the
// time steps of the policy window activates the token: the matched step is stored in state.db
// first (so the same code cannot log in afterwards), then the token turns active. A code from a
// step outside the window is a ClockSkew; its step is stored too, so it never verifies later.
func (a *Admin) Confirm(user, id, answer string) (CodeCheck, error) {
	var tok token.Token
	if err := a.Tokens.View(func(x *store.TokensTx) error {
		var err error
		tok, err = x.Token(user, id)
		return err
	}); err != nil {
		return CodeCheck{}, err
	}
	if tok.State != token.Pending {
		return CodeCheck{}, ErrNotPending
	}
	if _, ok := totp.ParseCode(answer, tok.Digits); !ok {
		return CodeCheck{Outcome: NotACode}, nil
	}
	// The match and its record are one state.db transaction: the accepted step, or a step
	// matched outside the window (burned, so that a code shown early never verifies later).
	var m token.Result
	if err := a.State.Update(func(x *store.StateTx) error {
		last := x.LastStep(user, id)
		m = enroll.FinishCode(&tok, answer, a.Now(), a.Config.Window, last)
		if (m.Status == token.OK || m.Status == token.Skew) && m.Step > last {
			return x.SetLastStep(user, id, m.Step)
		}
		return nil
	}); err != nil {
		return CodeCheck{}, err
	}
	switch m.Status {
	case token.Skew:
		return CodeCheck{Outcome: ClockSkew, SkewSeconds: m.SkewSeconds}, nil
	case token.OK:
	default:
		return CodeCheck{Outcome: WrongCode}, nil
	}
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if err != nil {
			return err
		}
		if t.State != token.Pending {
			return ErrNotPending
		}
		t.State = token.Active
		return x.PutToken(t)
	})
	if err != nil {
		return CodeCheck{}, err
	}
	return CodeCheck{Outcome: Verified}, nil
}

// Cancel removes user/id if it is still pending. It reports whether it removed it. A pending
// hardware token goes back to the unassigned ones instead of being lost with its seed.
func (a *Admin) Cancel(user, id string) (bool, error) {
	removed := false
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		t, err := x.Token(user, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if t.State != token.Pending {
			return nil
		}
		removed = true
		return x.DeletePending(user, id, a.Now())
	})
	return removed, err
}

// QR says whether and how the enrollment screen shows the QR code.
type QR struct {
	Show bool
	Mode qrterm.Mode
}

// WriteEnrollment writes the enrollment screen: the QR code, the otpauth URI and the secret in
// base32 and hex. It is the only place a secret is ever written out.
func WriteEnrollment(w io.Writer, e *Enrollment, qr QR) error {
	t := &e.Token
	var b strings.Builder
	state := "pending until a code from it is entered"
	if t.State == token.Active {
		state = "active"
	}
	fmt.Fprintf(&b, "New token %s (%q) for %s, %s.\n\n", t.ID, token.Clean(t.Name), token.Clean(t.User), state)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	uri := e.Key.URI()
	if qr.Show {
		msg := "\n"
		// In ASCII mode (80 columns) the code may hold a shorter URI of the same key.
		form, err := qrterm.WriteKey(w, e.Key, qr.Mode)
		switch {
		case errors.Is(err, qrterm.ErrTooWide) || errors.Is(err, qrterm.ErrTooLong):
			// qrterm's errors never hold the content.
			msg = fmt.Sprintf("(No QR code: %v.)\n\n", err)
		case err != nil:
			return err
		case form != qrterm.FullURI:
			msg = "(" + form.Note() + ")\n\n"
		}
		if _, err := io.WriteString(w, msg); err != nil {
			return err
		}
	}
	b.Reset()
	b.WriteString("Scan the QR code with an authenticator app, or paste or type the key:\n")
	fmt.Fprintf(&b, "  otpauth URI:     %s\n", uri)
	fmt.Fprintf(&b, "  secret (base32): %s\n", totp.EncodeSecret(t.Secret))
	fmt.Fprintf(&b, "  secret (hex):    %s\n", hex.EncodeToString(t.Secret))
	fmt.Fprintf(&b, "  parameters:      %s, %d digits, every %d seconds\n", t.Algorithm, t.Digits, t.Period)
	b.WriteString("This is the only time the secret is shown.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Attempts is how many codes an enrollment accepts before it gives up.
const Attempts = 3

// maxLines bounds the lines read in one enrollment (blank lines do not use up an attempt).
const maxLines = 20

// VerifyInteractive asks for a first code on out and reads answers from in, up to Attempts codes.
// A verified code activates the token. A wrong device clock gets a hint. End of input, ctx being
// cancelled (a signal) or too many wrong codes remove the pending token; the error then says
// which (ErrCancelled, ErrNotVerified).
func (a *Admin) VerifyInteractive(ctx context.Context, e *Enrollment, in io.Reader, out io.Writer) error {
	t := &e.Token
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(in, 256)
		for {
			line, err := r.ReadString('\n')
			if line != "" || err == nil {
				select {
				case lines <- strings.TrimRight(line, "\r\n"):
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	shows := "the app shows"
	if t.Serial != "" {
		shows = "the device " + token.Clean(t.Serial) + " shows"
	}
	fmt.Fprintf(out, "\nEnter the %d-digit code %s now to activate the token.\n", t.Digits, shows)
	giveUp := func(cause error, why string) error {
		removed, err := a.Cancel(t.User, t.ID)
		if err != nil {
			return fmt.Errorf("%s; removing pending token %s failed: %w", why, t.ID, err)
		}
		switch {
		case removed && t.Serial != "":
			fmt.Fprintf(out, "\n%s; hardware token %s is unassigned again.\n", why, token.Clean(t.Serial))
		case removed:
			fmt.Fprintf(out, "\n%s; the pending token %s of %s was removed.\n", why, t.ID, token.Clean(t.User))
		}
		return cause
	}
	attempt, read := 0, 0
	for attempt < Attempts {
		fmt.Fprintf(out, "Code: ")
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return giveUp(ErrCancelled, "Interrupted")
		case line, ok = <-lines:
		}
		if !ok {
			return giveUp(ErrCancelled, "No code entered (end of input)")
		}
		if read++; read > maxLines {
			break
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		attempt++
		left := Attempts - attempt
		check, err := a.Confirm(t.User, t.ID, line)
		if err != nil {
			return err
		}
		switch check.Outcome {
		case Verified:
			t.State = token.Active
			fmt.Fprintf(out, "Code verified: token %s (%q) of %s is active.\n", t.ID, token.Clean(t.Name), token.Clean(t.User))
			return nil
		case NotACode:
			fmt.Fprintf(out, "That is not a %d-digit code.%s\n", t.Digits, tries(left))
		case WrongCode:
			fmt.Fprintf(out, "That code is not valid: type the code the app shows now, not an earlier one.%s\n", tries(left))
		case ClockSkew:
			dir := "ahead"
			if check.SkewSeconds < 0 {
				dir = "behind"
			}
			fmt.Fprintf(out, "That code is from the wrong time: the device clock seems about %d seconds %s. "+
				"Set the device to take its time from the network.%s\n", abs(check.SkewSeconds), dir, tries(left))
		}
	}
	return giveUp(ErrNotVerified, "No valid code entered")
}

func tries(left int) string {
	switch left {
	case 0:
		return ""
	case 1:
		return " 1 try left."
	}
	return fmt.Sprintf(" %d tries left.", left)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
