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
	// Two passes over the body: the first checks every line and keeps only the invalid ones, the
	// second writes a chunk at a time, so an import of 100k tokens never holds all its records.
	valid := func(c tokenimport.CSVRecord) bool { return validName(c.User, maxNameLen) }
	var badNames []tokenimport.LineError
	bad, err := tokenimport.ScanCSV(bytes.NewReader(body), func(c tokenimport.CSVRecord) error {
		if !valid(c) {
			badNames = append(badNames, tokenimport.LineError{Line: c.Line, Msg: "user name is not valid (no '/')"})
		}
		return nil
	})
	if err != nil {
		return 0, nil, badRequest("%v", err)
	}
	rep := ImportReport{Invalid: append(bad, badNames...)}
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
	write := func(chunk []tokenimport.CSVRecord) error {
		var added, dups, created int
		var newToks []token.Token
		var mailed []bool // of newToks: the user has a mail address
		_, err := s.change(r.Context(), actor, "import.csv", fmt.Sprintf("lines %d-%d", chunk[0].Line, chunk[len(chunk)-1].Line), reason, func(x *txn) error {
			added, dups, created, newToks, mailed = 0, 0, 0, nil, nil
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
				mailed = append(mailed, u.Mail != "")
				added++
			}
			if added == 0 && created == 0 {
				return errNothing
			}
			return nil
		})
		if err != nil && !errors.Is(err, errNothing) {
			return fmt.Errorf("import chunk from line %d: %w (%d tokens imported before it)", chunk[0].Line, err, rep.Added)
		}
		if err == nil {
			rep.Revisions++
			imported.add(newToks, mailed)
		}
		rep.Added, rep.Duplicates, rep.UsersCreated = rep.Added+added, rep.Duplicates+dups, rep.UsersCreated+created
		return nil
	}
	chunk := make([]tokenimport.CSVRecord, 0, tokenimport.DefaultChunk)
	_, err = tokenimport.ScanCSV(bytes.NewReader(body), func(c tokenimport.CSVRecord) error {
		if !valid(c) {
			return nil // skip_invalid: counted in the first pass
		}
		if chunk = append(chunk, c); len(chunk) < tokenimport.DefaultChunk {
			return nil
		}
		err := write(chunk)
		chunk = chunk[:0]
		return err
	})
	if err == nil && len(chunk) > 0 {
		err = write(chunk)
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rep, nil
}

// prefetchUsers reads what a chunk reads of each user in a few requests: on etcd each read is a
// round trip otherwise, 3000 for a chunk of new users.
func prefetchUsers(x *txn, chunk []tokenimport.CSVRecord) error {
	var keys, prefixes []string
	seen := map[string]bool{}
	for _, c := range chunk {
		if !seen[c.User] {
			seen[c.User] = true
			keys, prefixes = userReads(keys, prefixes, c.User)
		}
	}
	return kv.Prefetch(x.Txn, keys, prefixes)
}

// userReads appends what a change of a user reads of it: the user, its enrolled mark (which an
// active token clears) and its tokens.
func userReads(keys, prefixes []string, user string) ([]string, []string) {
	return append(keys, prefixUser+user, prefixRec+syncframe.EnrolledKey(user)),
		append(prefixes, prefixRec+syncframe.TokenKey(user, ""))
}

// errNothing rolls back a chunk that would only write its audit record.
var errNothing = errors.New("nothing to import")

// importNotices collects what an import added for the users who have a mail address, by user
// in the order users first appear: the count, and the first maxListed tokens (without their
// secrets), so that its size is bounded by the users to notify, not by the file. Tokens of users
// without an address are only counted.
type importNotices struct {
	users  []string
	toks   map[string]*userImport
	noMail int // tokens added for users without a mail address
}

// userImport is what one user's notice says: how many tokens, and the first maxListed.
type userImport struct {
	n     int
	first []importedToken
}

// importedToken is what a notice says of a token.
type importedToken struct {
	ID, Name string
	State    token.State
}

// add records the tokens of one committed chunk; mailed[i] says whether toks[i]'s user had a
// mail address in that chunk's transaction.
func (n *importNotices) add(toks []token.Token, mailed []bool) {
	if n.toks == nil {
		n.toks = map[string]*userImport{}
	}
	for i, t := range toks {
		if !mailed[i] {
			n.noMail++
			continue
		}
		ui, ok := n.toks[t.User]
		if !ok {
			ui = &userImport{}
			n.toks[t.User] = ui
			n.users = append(n.users, t.User)
		}
		ui.n++
		if len(ui.first) < maxListed {
			ui.first = append(ui.first, importedToken{ID: t.ID, Name: t.Name, State: t.State})
		}
	}
}

// maxListed bounds the tokens an import notice names one by one.
const maxListed = 10

// importWhat is the notice of an import for one user: how many tokens, and which.
func importWhat(ui *userImport) string {
	if ui.n == 1 {
		t := ui.first[0]
		return fmt.Sprintf("A token %q (id %s, %s) was added to your account by an import.", t.Name, t.ID, t.State)
	}
	names := make([]string, 0, len(ui.first))
	for _, t := range ui.first {
		names = append(names, fmt.Sprintf("%q (id %s, %s)", t.Name, t.ID, t.State))
	}
	list := strings.Join(names, ", ")
	if ui.n > len(ui.first) {
		list += fmt.Sprintf(" and %d more", ui.n-len(ui.first))
	}
	return fmt.Sprintf("%d tokens were added to your account by an import: %s.", ui.n, list)
}

// notifyImport mails each user of n one notice, at the address the user has now. The users are
// read in one transaction; tokens of users without a mail address (those the import created
// have none) are counted in one log line.
func (s *Server) notifyImport(ctx context.Context, actor string, n *importNotices) {
	noMail, notified := n.noMail, 0
	defer func() {
		if noMail > 0 {
			s.log.Info("import mail notices not sent: users have no mail address", "tokens", noMail, "notified", notified)
		}
	}()
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
	for _, u := range users {
		ui := n.toks[u.Name]
		if u.Mail == "" {
			noMail += ui.n // removed since the import
			continue
		}
		subject := "new token added"
		if ui.n > 1 {
			subject = "new tokens added"
		}
		s.notifyUser(u, subject, importWhat(ui), "administrator "+actor)
		notified++
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
