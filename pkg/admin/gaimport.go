package admin

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// GAResult says what ImportGA did.
type GAResult struct {
	Token token.Token
	// Already is set when the user already had a token with this secret; nothing was written.
	Already bool
	// Scratch is the number of scratch codes stored as backup codes, Replaced the number of
	// backup codes the user had before, which they replace.
	Scratch, Replaced int
}

// ImportGA writes f as one active token of user named GAName, and its scratch codes as the user's
// backup codes (replacing any the user had). Importing the same file again changes nothing.
func (a *Admin) ImportGA(user string, f tokenimport.GAFile) (GAResult, error) {
	var res GAResult
	if err := token.ValidUser(user); err != nil {
		return res, err
	}
	p := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: f.Period}
	if err := p.Validate(); err != nil {
		return res, err
	}
	var recs []token.BackupCode
	now := a.Now().UTC().Truncate(time.Second)
	for _, c := range f.Scratch {
		rec, err := backupcode.Record(a.Rand, user, c, now)
		if err != nil {
			return res, err
		}
		recs = append(recs, rec)
	}
	if err := a.prepare(); err != nil {
		return res, err
	}
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if len(t.Secret) == len(f.Secret) && subtle.ConstantTimeCompare(t.Secret, f.Secret) == 1 {
				res.Token, res.Already = t, true
				return nil
			}
		}
		id, err := token.NewID(a.Rand, func(id string) bool { return token.HasID(toks, id) })
		if err != nil {
			return err
		}
		res.Token = token.Token{
			User: user, ID: id, Name: tokenimport.GAName,
			Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period,
			Secret: f.Secret, State: token.Active, Created: now,
		}
		if err := x.PutToken(res.Token); err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		old, err := x.BackupCodes(user)
		if err != nil {
			return err
		}
		res.Scratch, res.Replaced = len(recs), len(old)
		return x.ReplaceBackupCodes(user, recs)
	})
	if err != nil || res.Already || len(recs) == 0 {
		return res, err
	}
	if err := a.State.Update(func(x *store.StateTx) error { return x.ForgetBackupUsed(user) }); err != nil {
		return res, fmt.Errorf("token imported, but the old backup codes' used marks were not cleared: %w", err)
	}
	return res, nil
}
