// Package enrollcli is the logic of the `totp` user command (docs/enrollment.md, "totp CLI"):
// enroll, list, status, rename, remove and backup-codes over totp-syncd's D-Bus service. It
// draws the QR code with pkg/qrterm, asks for codes, and prints only text cleaned of control
// characters. cmd/totp is a thin main around it.
package enrollcli

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Attempts is how many codes enroll accepts for one pending token.
const Attempts = 3

// ProofPrompt asks for a proof when the registry wants one.
const ProofPrompt = "Code from one of your existing tokens (or a backup code): "

// CLI runs one command. ReadSecret reads an answer without echo on a terminal; nil reads a line
// from In.
type CLI struct {
	Svc        Service
	In         *bufio.Reader
	Out        io.Writer
	ReadSecret func(prompt string) (string, error)
	QR         qrterm.Mode
	// ActiveWait bounds the wait for a new token to be active on this node (10 s); Poll is the
	// interval of ListTokens while waiting (250 ms).
	ActiveWait, Poll time.Duration
	Now              func() time.Time
}

func (c *CLI) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *CLI) printf(format string, args ...any) { fmt.Fprintf(c.Out, format, args...) }

// line reads one answer line; io.EOF at end of input.
func (c *CLI) line(prompt string) (string, error) {
	c.printf("%s", prompt)
	s, err := c.In.ReadString('\n')
	if s == "" && err != nil {
		return "", err
	}
	return strings.TrimSpace(s), nil
}

func (c *CLI) secret(prompt string) (string, error) {
	if c.ReadSecret != nil {
		s, err := c.ReadSecret(prompt)
		return strings.TrimSpace(s), err
	}
	return c.line(prompt)
}

// isProofRequired reports whether err is the registry's refusal for a missing proof.
func isProofRequired(err error) bool {
	var ue *refusal.Error
	return errors.As(err, &ue) && ue.Kind == refusal.Refused && strings.HasPrefix(ue.Message, "a proof is required")
}

// isBootstrapRequired reports whether err is the registry's refusal of a first token without
// a mailed bootstrap code.
func isBootstrapRequired(err error) bool {
	var ue *refusal.Error
	return errors.As(err, &ue) && ue.Kind == refusal.Refused && strings.HasPrefix(ue.Message, "a bootstrap code is required")
}

// BootstrapPrompt asks for the one-time code the registry mailed.
const BootstrapPrompt = "One-time code from the mail: "

// bootstrap has the registry mail a one-time code (a mail sent less than a minute ago is used
// as it is) and reads it.
func (c *CLI) bootstrap(ctx context.Context) (string, error) {
	c.printf("This site mails you a one-time code before your first token.\n")
	exp, err := c.Svc.RequestBootstrapCode(ctx)
	var ue *refusal.Error
	switch {
	case err == nil:
		c.printf("It was sent to your mail address on record and works once, until %s.\n",
			time.Unix(exp, 0).Format("15:04"))
	case errors.As(err, &ue) && ue.Kind == refusal.Refused && strings.Contains(ue.Message, "less than a minute ago"):
		c.printf("%s.\n", token.Clean(ue.Message))
	default:
		return "", err
	}
	code, err := c.secret(BootstrapPrompt)
	if err != nil {
		return "", fmt.Errorf("no one-time code given: %w", err)
	}
	return code, nil
}

// Enroll adds a token named name: the QR code and key, then codes until one is verified.
func (c *CLI) Enroll(ctx context.Context, name string) error {
	id, uri, expires, err := c.Svc.BeginEnrollment(ctx, name, "")
	if isBootstrapRequired(err) {
		code, berr := c.bootstrap(ctx)
		if berr != nil {
			return berr
		}
		id, uri, expires, err = c.Svc.BeginEnrollment(ctx, name, code)
	}
	if isProofRequired(err) {
		c.printf("You have a token already: adding another needs a proof.\n")
		proof, rerr := c.secret(ProofPrompt)
		if rerr != nil {
			return fmt.Errorf("no proof given: %w", rerr)
		}
		id, uri, expires, err = c.Svc.BeginEnrollment(ctx, name, proof)
	}
	if err != nil {
		return err
	}
	key, err := totp.ParseURI(uri)
	if err != nil {
		// The URI is a secret: the error does not show it.
		return &refusal.Error{Kind: refusal.Unavailable, Message: "totp-syncd sent an otpauth URI that cannot be used; ask your administrators"}
	}
	c.printf("New token %s for %s, pending until a code from it is entered (by %s).\n\n",
		token.Clean(id), token.Clean(key.Account), time.Unix(expires, 0).Format("15:04"))
	uri = key.URI() // rebuilt from parsed parts: nothing unchecked reaches the terminal
	// In ASCII mode (80 columns) the code may hold a shorter URI of the same key.
	form, err := qrterm.WriteKey(c.Out, key, c.QR)
	switch {
	case errors.Is(err, qrterm.ErrTooWide) || errors.Is(err, qrterm.ErrTooLong):
		c.printf("(No QR code: %v; use --qr half or full, or type the key.)\n", err)
	case err != nil:
		return err
	case form != qrterm.FullURI:
		c.printf("(%s)\n", form.Note())
	}
	c.printf("\nScan the QR code with an authenticator app, or paste or type the key:\n")
	c.printf("  otpauth URI:     %s\n", token.Clean(uri))
	c.printf("  secret (base32): %s\n", totp.EncodeSecret(key.Secret))
	c.printf("  secret (hex):    %s\n", hex.EncodeToString(key.Secret))
	c.printf("  parameters:      %s, %d digits, every %d seconds\n", key.Params.Algorithm, key.Params.Digits, key.Params.Period)
	c.printf("The token is not valid until you type a code from the app.\n\n")

	var codes []string
	verified := false
	for tries := 0; tries < Attempts && !verified; {
		code, err := c.line("Code shown by the app now: ")
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("no code given")
			}
			return fmt.Errorf("enrollment not finished (token %s stays pending until it expires): %w", token.Clean(id), err)
		}
		if code == "" {
			continue
		}
		tries++
		status, skew, cs, err := c.Svc.FinishEnrollment(ctx, id, code)
		if err != nil {
			return err
		}
		switch status {
		case "active":
			verified, codes = true, cs
		case "wrong_code":
			c.printf("%s\n", enroll.WrongCodeAdvice)
		case "clock_skew":
			c.printf("%s\n", enroll.SkewAdvice(int(skew)))
		case "expired":
			return &refusal.Error{Kind: refusal.Refused, Message: "the enrollment expired (10 minutes); run totp enroll again"}
		default:
			return &refusal.Error{Kind: refusal.Unavailable, Message: fmt.Sprintf("unexpected answer %q from totp-syncd", token.Clean(status))}
		}
	}
	if !verified {
		return &refusal.Error{Kind: refusal.Refused, Message: fmt.Sprintf("no code verified in %d tries; token %s stays pending until it expires. Run totp enroll again", Attempts, token.Clean(id))}
	}
	c.printf("Security code verified: token %s is registered.\n", token.Clean(id))
	if len(codes) > 0 {
		c.printf("\nYour backup codes, each good for one login when your phone is lost.\n" +
			"Save them now (print them or keep them in a password manager); they are not shown again:\n")
		for _, bc := range codes {
			c.printf("  %s\n", token.Clean(bc))
		}
		c.printf("\n")
	}
	return c.waitActive(ctx, id)
}

// waitActive polls ListTokens until token id is active on this node or ActiveWait passes.
func (c *CLI) waitActive(ctx context.Context, id string) error {
	wait, poll := c.ActiveWait, c.Poll
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	c.Svc.SyncNow(ctx) // best effort: fetch the token now
	deadline := c.now().Add(wait)
	for {
		toks, err := c.Svc.ListTokens(ctx)
		if err == nil {
			for _, t := range toks {
				if t.ID == id && t.Active {
					c.printf("Token %s is active on this node now.\n", token.Clean(id))
					return nil
				}
			}
		}
		if !c.now().Before(deadline) {
			c.printf("Token %s is registered but not yet active on this node; it will be within a few minutes.\n"+
				"Until then a login here may still fail.\n", token.Clean(id))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// List prints the caller's tokens.
func (c *CLI) List(ctx context.Context) error {
	toks, err := c.Svc.ListTokens(ctx)
	if err != nil {
		return err
	}
	if len(toks) == 0 {
		c.printf("You have no tokens on this node. Add one with: totp enroll\n")
		return nil
	}
	c.printf("%-12s %-24s %-9s %-17s %s\n", "ID", "NAME", "STATE", "CREATED", "ACTIVE HERE")
	for _, t := range toks {
		here := "no"
		if t.Active {
			here = "yes"
		}
		c.printf("%-12s %-24s %-9s %-17s %s\n", token.Clean(t.ID), token.Clean(t.Name), token.Clean(t.State),
			time.Unix(t.Created, 0).Format("2006-01-02 15:04"), here)
	}
	return nil
}

// Status prints the node's sync status.
func (c *CLI) Status(ctx context.Context) error {
	m, err := c.Svc.Status(ctx)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "last_contact":
			if n, ok := v.(int64); ok && n > 0 {
				v = time.Unix(n, 0).Format(time.RFC3339)
			} else {
				v = "never"
			}
		case "staleness_s":
			if f, ok := v.(float64); ok && f >= 0 {
				v = fmt.Sprintf("%.0f s", f)
			} else {
				v = "-"
			}
		}
		c.printf("%-19s %s\n", token.Clean(k)+":", token.Clean(fmt.Sprint(v)))
	}
	return nil
}

// Rename renames a token.
func (c *CLI) Rename(ctx context.Context, id, name string) error {
	if err := c.Svc.RenameToken(ctx, id, name); err != nil {
		return err
	}
	c.printf("Token %s is now called %q.\n", token.Clean(id), token.Clean(name))
	return nil
}

// Remove removes a token after asking for a proof.
func (c *CLI) Remove(ctx context.Context, id string) error {
	proof, err := c.secret(ProofPrompt)
	if err != nil {
		return fmt.Errorf("no proof given: %w", err)
	}
	if err := c.Svc.RemoveToken(ctx, id, proof); err != nil {
		return err
	}
	c.printf("Token %s is removed.\n", token.Clean(id))
	return nil
}

// BackupCodes replaces the backup codes after asking for a proof.
func (c *CLI) BackupCodes(ctx context.Context) error {
	proof, err := c.secret(ProofPrompt)
	if err != nil {
		return fmt.Errorf("no proof given: %w", err)
	}
	codes, err := c.Svc.RegenerateBackupCodes(ctx, proof)
	if err != nil {
		return err
	}
	c.printf("Your new backup codes (the old ones no longer work). Save them now; they are not shown again:\n")
	for _, bc := range codes {
		c.printf("  %s\n", token.Clean(bc))
	}
	return nil
}
