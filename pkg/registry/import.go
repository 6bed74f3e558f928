package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// ImportReport is the answer of a CSV import.
type ImportReport struct {
	Added        int                     `json:"added"`
	Duplicates   int                     `json:"duplicates"`
	UsersCreated int                     `json:"users_created"`
	Revisions    int                     `json:"revisions"`
	Invalid      []tokenimport.LineError `json:"invalid"`
	Error        string                  `json:"error,omitempty"`
}

// importParams reads ?algorithm=&digits=&period= for every imported token.
func importParams(r *http.Request) (totp.Params, error) {
	p := totp.DefaultParams
	q := r.URL.Query()
	if a := q.Get("algorithm"); a != "" {
		p.Algorithm = totp.Algorithm(strings.ToUpper(a))
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"digits", &p.Digits}, {"period", &p.Period}} {
		if s := q.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return p, badRequest("%s: want a number", f.name)
			}
			*f.v = n
		}
	}
	if err := p.Validate(); err != nil {
		return p, badRequest("%v", err)
	}
	return p, nil
}

// importCSV answers POST /v1/admin/import/csv[?scope=X&skip_invalid=1]: lines
// "user,base32secret[,name]" (tokenimport.ParseCSV), written in chunks of tokenimport.DefaultChunk tokens,
// one revision and one audit record each. A user's token with the same secret is a duplicate and
// skipped, so importing a file twice adds nothing. Users that do not exist are created, with the
// scope given.
func (s *Server) importCSV(r *http.Request, actor string, body []byte) (int, any, error) {
	params, err := importParams(r)
	if err != nil {
		return 0, nil, err
	}
	var scopes []string
	if sc := r.URL.Query().Get("scope"); sc != "" {
		if !validScope(sc) {
			return 0, nil, badRequest("scope: letters, digits, '.', '_' and '-'")
		}
		scopes = []string{sc}
	}
	skip := r.URL.Query().Get("skip_invalid")
	recs, bad, err := tokenimport.ParseCSV(bytes.NewReader(body))
	if err != nil {
		return 0, nil, badRequest("%v", err)
	}
	rep := ImportReport{Invalid: bad}
	recs = slices.DeleteFunc(recs, func(c tokenimport.CSVRecord) bool {
		if !validName(c.User, maxNameLen) {
			rep.Invalid = append(rep.Invalid, tokenimport.LineError{Line: c.Line, Msg: "user name is not valid (no '/')"})
			return true
		}
		return false
	})
	if rep.Invalid == nil {
		rep.Invalid = []tokenimport.LineError{}
	}
	if len(rep.Invalid) > 0 && skip != "1" && skip != "true" {
		rep.Error = fmt.Sprintf("%d invalid lines; nothing was imported (skip_invalid=1 imports the valid ones)", len(rep.Invalid))
		return http.StatusBadRequest, rep, nil
	}
	reason := reasonOf(r, "")
	// Each user gets one notice for the whole import, also when a later chunk fails: what the
	// committed chunks added to their account.
	imported := &importNotices{}
	defer func() { s.notifyImport(r.Context(), actor, imported) }()
	for start := 0; start < len(recs); start += tokenimport.DefaultChunk {
		chunk := recs[start:min(start+tokenimport.DefaultChunk, len(recs))]
		var added, dups, created int
		var newToks []token.Token
		_, err := s.change(r.Context(), actor, "import.csv", fmt.Sprintf("lines %d-%d", chunk[0].Line, chunk[len(chunk)-1].Line), reason, func(x *txn) error {
			added, dups, created, newToks = 0, 0, 0, nil
			users := map[string]User{}
			toks := map[string][]token.Token{}
			if err := prefetchUsers(x, chunk); err != nil {
				return err
			}
			for _, c := range chunk {
				u, ok := users[c.User]
				if !ok {
					var err error
					u, err = x.user(c.User)
					if isNotFound(err) {
						u = User{Name: c.User, Scopes: append([]string{}, scopes...), Created: s.now().UTC()}
						if err := x.putUser(u); err != nil {
							return err
						}
						created++
					} else if err != nil {
						return err
					}
					users[c.User] = u
					if toks[c.User], err = x.tokens(c.User); err != nil {
						return err
					}
				}
				if slices.ContainsFunc(toks[c.User], func(t token.Token) bool { return bytes.Equal(t.Secret, c.Secret) }) {
					dups++
					continue
				}
				id, err := s.newTokenID(toks[c.User])
				if err != nil {
					return err
				}
				t := token.Token{User: c.User, ID: id, Name: c.Name, Algorithm: params.Algorithm, Digits: params.Digits,
					Period: params.Period, Secret: c.Secret, State: token.Active, Created: s.now().UTC()}
				if t.Name == "" {
					t.Name = "imported"
				}
				if err := x.putToken(u, t); err != nil {
					return err
				}
				toks[c.User] = append(toks[c.User], t)
				newToks = append(newToks, t)
				added++
			}
			if added == 0 && created == 0 {
				return errNothing
			}
			return nil
		})
		if err != nil && !errors.Is(err, errNothing) {
			return 0, nil, fmt.Errorf("import chunk from line %d: %w (%d tokens imported before it)", chunk[0].Line, err, rep.Added)
		}
		if err == nil {
			rep.Revisions++
			imported.add(newToks)
		}
		rep.Added, rep.Duplicates, rep.UsersCreated = rep.Added+added, rep.Duplicates+dups, rep.UsersCreated+created
	}
	return http.StatusOK, rep, nil
}

// prefetchUsers reads what a chunk reads of each user (the user, its tokens, its enrolled mark,
// which an active token clears) in a few requests: on etcd each read is a round trip otherwise,
// 3000 for a chunk of new users.
func prefetchUsers(x *txn, chunk []tokenimport.CSVRecord) error {
	var keys, prefixes []string
	seen := map[string]bool{}
	for _, c := range chunk {
		if !seen[c.User] {
			seen[c.User] = true
			keys = append(keys, prefixUser+c.User, prefixRec+syncframe.EnrolledKey(c.User))
			prefixes = append(prefixes, prefixRec+syncframe.TokenKey(c.User, ""))
		}
	}
	return kv.Prefetch(x.Txn, keys, prefixes)
}

// errNothing rolls back a chunk that would only write its audit record.
var errNothing = errors.New("nothing to import")

// importNotices collects the tokens an import added (without their secrets), by user in the
// order users first appear.
type importNotices struct {
	users []string
	toks  map[string][]importedToken
}

// importedToken is what a notice says of a token.
type importedToken struct {
	ID, Name string
	State    token.State
}

func (n *importNotices) add(toks []token.Token) {
	if n.toks == nil {
		n.toks = map[string][]importedToken{}
	}
	for _, t := range toks {
		if _, ok := n.toks[t.User]; !ok {
			n.users = append(n.users, t.User)
		}
		n.toks[t.User] = append(n.toks[t.User], importedToken{ID: t.ID, Name: t.Name, State: t.State})
	}
}

// maxListed bounds the tokens an import notice names one by one.
const maxListed = 10

// importWhat is the notice of an import for one user: how many tokens, and which.
func importWhat(toks []importedToken) string {
	if len(toks) == 1 {
		return fmt.Sprintf("A token %q (id %s, %s) was added to your account by an import.", toks[0].Name, toks[0].ID, toks[0].State)
	}
	names := make([]string, 0, min(len(toks), maxListed))
	for _, t := range toks[:min(len(toks), maxListed)] {
		names = append(names, fmt.Sprintf("%q (id %s, %s)", t.Name, t.ID, t.State))
	}
	list := strings.Join(names, ", ")
	if len(toks) > maxListed {
		list += fmt.Sprintf(" and %d more", len(toks)-maxListed)
	}
	return fmt.Sprintf("%d tokens were added to your account by an import: %s.", len(toks), list)
}

// notifyImport mails each user of n one notice. The users are read in one transaction; users
// without a mail address (those the import created have none) are counted in one log line.
func (s *Server) notifyImport(ctx context.Context, actor string, n *importNotices) {
	if len(n.users) == 0 {
		return
	}
	users := make([]User, 0, len(n.users))
	err := s.store.View(context.WithoutCancel(ctx), func(_ int64, tx kv.Txn) error {
		users = users[:0]
		x := &txn{Txn: tx, s: s}
		for _, name := range n.users {
			u, err := x.getUser(name)
			if errors.Is(err, kv.ErrNotFound) {
				continue // deleted since
			}
			if err != nil {
				return err
			}
			users = append(users, u)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("import mail notices not sent: cannot read users", "users", len(n.users), "err", err)
		return
	}
	noMail := 0
	for _, u := range users {
		if u.Mail == "" {
			noMail++
			continue
		}
		subject := "new token added"
		if len(n.toks[u.Name]) > 1 {
			subject = "new tokens added"
		}
		s.notifyUser(u, subject, importWhat(n.toks[u.Name]), "administrator "+actor)
	}
	if noMail > 0 {
		s.log.Info("import mail notices not sent: users have no mail address", "users", noMail, "notified", len(users)-noMail)
	}
}

// importGA answers POST /v1/admin/import/google-authenticator?user=NAME: the file's secret
// becomes an active token named tokenimport.GAName and its scratch codes the user's backup codes
// (replacing the old set). A file already imported changes nothing.
func (s *Server) importGA(r *http.Request, actor string, body []byte) (int, any, error) {
	name := r.URL.Query().Get("user")
	if !validName(name, maxNameLen) {
		return 0, nil, badRequest("user: want ?user=NAME")
	}
	f, err := tokenimport.ParseGA(body)
	if err != nil {
		return 0, nil, badRequest("google-authenticator file: %v", err)
	}
	now := s.now()
	codes := make([]token.BackupCode, 0, len(f.Scratch))
	for _, sc := range f.Scratch {
		c, err := backupcode.Record(s.rand, name, sc, now)
		if err != nil {
			return 0, nil, err
		}
		codes = append(codes, c)
	}
	rep := registryapi.GAResult{Ignored: f.Ignored}
	if rep.Ignored == nil {
		rep.Ignored = []string{}
	}
	_, err = s.change(r.Context(), actor, "import.google-authenticator", "user/"+name, reasonOf(r, ""), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		toks, err := x.tokens(name)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(toks, func(t token.Token) bool { return bytes.Equal(t.Secret, f.Secret) }); i >= 0 {
			rep.Already, rep.ID, rep.Token = true, toks[i].ID, toks[i].Info()
			return errNothing
		}
		id, err := s.newTokenID(toks)
		if err != nil {
			return err
		}
		t := token.Token{User: name, ID: id, Name: tokenimport.GAName, Algorithm: totp.SHA1, Digits: 6, Period: f.Period,
			Secret: f.Secret, State: token.Active, Created: now.UTC()}
		if err := x.putToken(u, t); err != nil {
			return err
		}
		rep.ID, rep.Token, rep.Scratch = id, t.Info(), len(codes)
		if len(codes) > 0 {
			rep.Replaced, err = x.replaceCodes(u, func(c token.BackupCode) bool { return c.Expires.IsZero() || c.Expired(now) }, codes)
		}
		return err
	})
	if errors.Is(err, errNothing) {
		return http.StatusOK, rep, nil
	}
	if err != nil {
		return 0, nil, err
	}
	what := fmt.Sprintf("A token %q (id %s) was added to your account by an import of a google-authenticator file.", rep.Token.Name, rep.ID)
	if rep.Scratch > 0 {
		what += fmt.Sprintf("\nIts %d scratch codes are now your backup codes; backup codes you had before no longer work.", rep.Scratch)
	}
	s.notify(r.Context(), name, "new token added", what, "administrator "+actor)
	return http.StatusOK, rep, nil
}
