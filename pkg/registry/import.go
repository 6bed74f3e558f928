package registry

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// ImportReport is the answer of a CSV import.
type ImportReport struct {
	Added        int               `json:"added"`
	Duplicates   int               `json:"duplicates"`
	UsersCreated int               `json:"users_created"`
	Revisions    int               `json:"revisions"`
	Invalid      []admin.LineError `json:"invalid"`
	Error        string            `json:"error,omitempty"`
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
// "user,base32secret[,name]" (admin.ParseCSV), written in chunks of admin.DefaultChunk tokens,
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
	recs, bad, err := admin.ParseCSV(bytes.NewReader(body))
	if err != nil {
		return 0, nil, badRequest("%v", err)
	}
	rep := ImportReport{Invalid: bad}
	recs = slices.DeleteFunc(recs, func(c admin.CSVRecord) bool {
		if !validName(c.User, maxNameLen) {
			rep.Invalid = append(rep.Invalid, admin.LineError{Line: c.Line, Msg: "user name is not valid (no '/')"})
			return true
		}
		return false
	})
	if rep.Invalid == nil {
		rep.Invalid = []admin.LineError{}
	}
	if len(rep.Invalid) > 0 && skip != "1" && skip != "true" {
		rep.Error = fmt.Sprintf("%d invalid lines; nothing was imported (skip_invalid=1 imports the valid ones)", len(rep.Invalid))
		return http.StatusBadRequest, rep, nil
	}
	reason := reasonOf(r, "")
	for start := 0; start < len(recs); start += admin.DefaultChunk {
		chunk := recs[start:min(start+admin.DefaultChunk, len(recs))]
		var added, dups, created int
		_, err := s.change(r.Context(), actor, "import.csv", fmt.Sprintf("lines %d-%d", chunk[0].Line, chunk[len(chunk)-1].Line), reason, func(x *txn) error {
			added, dups, created = 0, 0, 0
			users := map[string]User{}
			toks := map[string][]store.Token{}
			for _, c := range chunk {
				u, ok := users[c.User]
				if !ok {
					var err error
					u, err = x.user(c.User)
					var he *httpError
					if errors.As(err, &he) && he.status == http.StatusNotFound {
						u = User{Name: c.User, Scopes: append([]string{}, scopes...), Created: s.now().UTC()}
						if err := x.putJSON(prefixUser+u.Name, u); err != nil {
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
				if slices.ContainsFunc(toks[c.User], func(t store.Token) bool { return bytes.Equal(t.Secret, c.Secret) }) {
					dups++
					continue
				}
				id, err := s.newTokenID(toks[c.User])
				if err != nil {
					return err
				}
				t := store.Token{User: c.User, ID: id, Name: c.Name, Algorithm: params.Algorithm, Digits: params.Digits,
					Period: params.Period, Secret: c.Secret, State: store.Active, Created: s.now().UTC()}
				if t.Name == "" {
					t.Name = "imported"
				}
				if err := x.putToken(u, t); err != nil {
					return err
				}
				toks[c.User] = append(toks[c.User], t)
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
		}
		rep.Added, rep.Duplicates, rep.UsersCreated = rep.Added+added, rep.Duplicates+dups, rep.UsersCreated+created
	}
	return http.StatusOK, rep, nil
}

// errNothing rolls back a chunk that would only write its audit record.
var errNothing = errors.New("nothing to import")

// GAReport is the answer of a google-authenticator import.
type GAReport struct {
	ID       string    `json:"id"`
	Token    TokenInfo `json:"token"`
	Already  bool      `json:"already"`
	Scratch  int       `json:"scratch"`
	Replaced int       `json:"replaced"`
	Ignored  []string  `json:"ignored"`
}

// importGA answers POST /v1/admin/import/google-authenticator?user=NAME: the file's secret
// becomes an active token named admin.GAName and its scratch codes the user's backup codes
// (replacing the old set). A file already imported changes nothing.
func (s *Server) importGA(r *http.Request, actor string, body []byte) (int, any, error) {
	name := r.URL.Query().Get("user")
	if !validName(name, maxNameLen) {
		return 0, nil, badRequest("user: want ?user=NAME")
	}
	f, err := admin.ParseGA(body)
	if err != nil {
		return 0, nil, badRequest("google-authenticator file: %v", err)
	}
	now := s.now()
	codes := make([]store.BackupCode, 0, len(f.Scratch))
	for _, sc := range f.Scratch {
		c, err := backupcode.Record(s.rand, name, sc, now)
		if err != nil {
			return 0, nil, err
		}
		codes = append(codes, c)
	}
	rep := GAReport{Ignored: f.Ignored}
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
		if i := slices.IndexFunc(toks, func(t store.Token) bool { return bytes.Equal(t.Secret, f.Secret) }); i >= 0 {
			rep.Already, rep.ID, rep.Token = true, toks[i].ID, tokenInfo(toks[i])
			return errNothing
		}
		id, err := s.newTokenID(toks)
		if err != nil {
			return err
		}
		t := store.Token{User: name, ID: id, Name: admin.GAName, Algorithm: totp.SHA1, Digits: 6, Period: f.Period,
			Secret: f.Secret, State: store.Active, Created: now.UTC()}
		if err := x.putToken(u, t); err != nil {
			return err
		}
		rep.ID, rep.Token, rep.Scratch = id, tokenInfo(t), len(codes)
		if len(codes) > 0 {
			rep.Replaced, err = x.replaceCodes(u, func(c store.BackupCode) bool { return c.Expires.IsZero() || c.Expired(now) }, codes)
		}
		return err
	})
	if err != nil && !errors.Is(err, errNothing) {
		return 0, nil, err
	}
	return http.StatusOK, rep, nil
}
