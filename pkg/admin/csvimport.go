package admin

import (
	"crypto/subtle"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// ImportOptions tune ImportCSV.
type ImportOptions struct {
	// Params apply to every imported token (zero means totp.DefaultParams).
	Params totp.Params
	// SkipInvalid imports the valid lines even when some are invalid.
	SkipInvalid bool
	// Chunk is the number of tokens per write transaction (0 means DefaultChunk).
	Chunk int
	// DefaultName names tokens whose line has no name (empty means "imported").
	DefaultName string
	// KnownUser, when set, says whether a user exists on this host; the users of imported lines
	// it does not know are listed in the report (they are imported all the same).
	KnownUser func(user string) bool
}

// ImportReport says what an import did.
type ImportReport struct {
	Added int
	// Duplicates are lines whose user already had a token with the same secret; they are skipped,
	// so running an import twice adds nothing.
	Duplicates int
	// Invalid are the lines that were not imported.
	Invalid []tokenimport.LineError
	// UnknownUsers are the users of imported lines that ImportOptions.KnownUser does not know,
	// sorted, each once.
	UnknownUsers []string
}

// ImportCSV validates a whole CSV file (ParseCSV) and, when every line is valid or o.SkipInvalid
// is set, writes its tokens as active, sorted by user, in transactions of o.Chunk tokens. With
// invalid lines and no SkipInvalid it writes nothing and returns ErrInvalidLines; the lines are in
// the report.
func (a *Admin) ImportCSV(r io.Reader, o ImportOptions) (ImportReport, error) {
	var rep ImportReport
	if o.Params == (totp.Params{}) {
		o.Params = totp.DefaultParams
	}
	if err := o.Params.Validate(); err != nil {
		return rep, err
	}
	if o.Chunk <= 0 {
		o.Chunk = tokenimport.DefaultChunk
	}
	if o.DefaultName == "" {
		o.DefaultName = "imported"
	}
	recs, bad, err := tokenimport.ParseCSV(r)
	if err != nil {
		return rep, err
	}
	rep.Invalid = bad
	if len(bad) > 0 && !o.SkipInvalid {
		return rep, fmt.Errorf("%d %w", len(bad), ErrInvalidLines)
	}
	if len(recs) == 0 {
		return rep, nil
	}
	if err := a.prepare(); err != nil {
		return rep, err
	}
	now := a.Now().UTC().Truncate(time.Second)
	toks := make([]token.Token, len(recs))
	ids := make([]byte, token.IDLen*len(recs))
	if _, err := io.ReadFull(a.Rand, ids); err != nil {
		return rep, fmt.Errorf("random token ids: %w", err)
	}
	for i, rec := range recs {
		name := rec.Name
		if name == "" {
			name = o.DefaultName
		}
		toks[i] = token.Token{
			User: rec.User, ID: fmt.Sprintf("%x", ids[i*token.IDLen:(i+1)*token.IDLen]), Name: name,
			Algorithm: o.Params.Algorithm, Digits: o.Params.Digits, Period: o.Params.Period,
			Secret: rec.Secret, State: token.Active, Created: now,
		}
	}
	// bbolt inserts fastest in key order ("user\x00id"); a stable sort keeps a user's lines in
	// file order when ids tie.
	sort.SliceStable(toks, func(i, j int) bool {
		if toks[i].User != toks[j].User {
			return toks[i].User < toks[j].User
		}
		return toks[i].ID < toks[j].ID
	})
	unknown := map[string]bool{}
	for start := 0; start < len(toks); start += o.Chunk {
		chunk := toks[start:min(start+o.Chunk, len(toks))]
		added, dups := 0, 0
		var users []string // of the added tokens, each once (toks is sorted by user)
		err := a.Tokens.Update(func(x *store.TokensTx) error {
			added, dups, users = 0, 0, users[:0]
			var user string
			var have []token.Token
			for _, t := range chunk {
				if t.User != user || have == nil {
					user = t.User
					var err error
					if have, err = x.UserTokens(user); err != nil {
						return err
					}
					if have == nil {
						have = []token.Token{}
					}
				}
				if hasSecret(have, t.Secret) {
					dups++
					continue
				}
				if token.HasID(have, t.ID) {
					id, err := token.NewID(a.Rand, func(id string) bool { return token.HasID(have, id) })
					if err != nil {
						return err
					}
					t.ID = id
				}
				if err := x.PutToken(t); err != nil {
					return fmt.Errorf("token %s of %s: %w", t.ID, token.Clean(t.User), err)
				}
				have = append(have, t)
				added++
				if len(users) == 0 || users[len(users)-1] != t.User {
					users = append(users, t.User)
				}
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("write tokens (%d written before this): %w", rep.Added, err)
		}
		rep.Added += added
		rep.Duplicates += dups
		for _, u := range users { // outside the transaction: a lookup may be slow
			if o.KnownUser != nil && !unknown[u] && !o.KnownUser(u) {
				unknown[u] = true
			}
		}
	}
	for u := range unknown {
		rep.UnknownUsers = append(rep.UnknownUsers, u)
	}
	sort.Strings(rep.UnknownUsers)
	return rep, nil
}

func hasSecret(toks []token.Token, secret []byte) bool {
	for _, t := range toks {
		if len(t.Secret) == len(secret) && subtle.ConstantTimeCompare(t.Secret, secret) == 1 {
			return true
		}
	}
	return false
}
