package registry

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Request bodies of the user and token endpoints. Each has its parse function, which the fuzz
// targets call: they decode strictly and validate, so a handler only sees checked values.
type userRequest struct {
	Name   string   `json:"name"`
	Mail   string   `json:"mail"`
	Scopes []string `json:"scopes"`
	Reason string   `json:"reason"`
}

type userPatch struct {
	Mail   *string   `json:"mail"`
	Scopes *[]string `json:"scopes"`
	Reason string    `json:"reason"`
}

type tokenRequest struct {
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	Algorithm string `json:"algorithm"`
	Digits    int    `json:"digits"`
	Period    int    `json:"period"`
	State     string `json:"state"`
	Reason    string `json:"reason"`

	secret []byte
	params totp.Params
}

type tokenPatch struct {
	State  *string `json:"state"`
	Name   *string `json:"name"`
	Reason string  `json:"reason"`
}

type passcodeRequest struct {
	TTL    string `json:"ttl"`
	Reason string `json:"reason"`

	ttl time.Duration
}

// reasonRequest is the optional body of reset, backup-codes and deletes.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// Passcode lifetimes.
const (
	passcodeDefault = time.Hour
	passcodeMax     = 7 * 24 * time.Hour
	passcodeMin     = time.Minute
)

func parseUserRequest(body []byte) (userRequest, error) {
	var q userRequest
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if !validName(q.Name, maxNameLen) {
		return q, badRequest("name: 1 to %d printable characters without '/' or spaces", maxNameLen)
	}
	if err := checkMail(q.Mail); err != nil {
		return q, err
	}
	var err error
	q.Scopes, err = normScopes(q.Scopes)
	return q, err
}

func parseUserPatch(body []byte) (userPatch, error) {
	var q userPatch
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if q.Mail != nil {
		if err := checkMail(*q.Mail); err != nil {
			return q, err
		}
	}
	if q.Scopes != nil {
		sc, err := normScopes(*q.Scopes)
		if err != nil {
			return q, err
		}
		q.Scopes = &sc
	}
	return q, nil
}

func parseTokenRequest(body []byte) (tokenRequest, error) {
	var q tokenRequest
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if q.Name != "" && token.CheckName(q.Name) != nil {
		return q, badRequest("name: 1 to 64 printable characters")
	}
	q.params = totp.DefaultParams
	if q.Algorithm != "" {
		q.params.Algorithm = totp.Algorithm(strings.ToUpper(q.Algorithm))
	}
	if q.Digits != 0 {
		q.params.Digits = q.Digits
	}
	if q.Period != 0 {
		q.params.Period = q.Period
	}
	if err := q.params.Validate(); err != nil {
		return q, badRequest("%v", err)
	}
	switch token.State(q.State) {
	case "":
		q.State = string(token.Active)
	case token.Active, token.Pending, token.Disabled:
	default:
		return q, badRequest("state: want active, pending or disabled")
	}
	if q.Secret != "" {
		s, err := totp.DecodeSecret(q.Secret)
		if err != nil {
			return q, badRequest("secret: not a base32 secret of %d to %d bytes", totp.MinSecretLen, totp.MaxSecretLen)
		}
		q.secret = s
	}
	return q, nil
}

func parseTokenPatch(body []byte) (tokenPatch, error) {
	var q tokenPatch
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if q.State != nil && token.State(*q.State) != token.Active && token.State(*q.State) != token.Disabled {
		return q, badRequest("state: want active or disabled")
	}
	if q.Name != nil && token.CheckName(*q.Name) != nil {
		return q, badRequest("name: 1 to 64 printable characters")
	}
	return q, nil
}

func parsePasscodeRequest(body []byte) (passcodeRequest, error) {
	var q passcodeRequest
	if err := decodeOptional(body, &q); err != nil {
		return q, err
	}
	q.ttl = passcodeDefault
	if q.TTL != "" {
		d, err := time.ParseDuration(q.TTL)
		if err != nil || d < passcodeMin || d > passcodeMax {
			return q, badRequest("ttl: want a duration from %s to %s", passcodeMin, passcodeMax)
		}
		q.ttl = d
	}
	return q, nil
}

// decodeOptional is decodeStrict, but an empty body is an empty object.
func decodeOptional(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return decodeStrict(body, v)
}

func checkMail(m string) error {
	if m == "" {
		return nil
	}
	at := strings.IndexByte(m, '@')
	if len(m) > maxMailLen || at <= 0 || at == len(m)-1 || strings.Count(m, "@") != 1 || !utf8.ValidString(m) ||
		strings.IndexFunc(m, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }) >= 0 {
		return badRequest("mail: want one address like user@example.org")
	}
	return nil
}

// userView is u as the admin API shows it, with its record counts.
func userView(u User, tokens, backupCodes int) registryapi.User {
	return registryapi.User{Name: u.Name, Mail: u.Mail, Scopes: u.Scopes, Tokens: tokens,
		BackupCodes: backupCodes, Created: u.Created}
}

// counts reads the record counts of every user (or one, with name) in one scan.
func counts(tx kv.Txn, name string) (map[string][2]int, error) {
	out := map[string][2]int{}
	prefixes := []string{prefixRec}
	if name != "" {
		prefixes = []string{prefixRec + syncframe.TokenKey(name, ""), prefixRec + syncframe.BackupKey(name, "")}
	}
	for _, p := range prefixes {
		err := tx.Range(p, func(kvp kv.KeyValue) error {
			kind, user, _, err := syncframe.ParseKey(kvp.Key[len(prefixRec):])
			if err != nil {
				return nil
			}
			c := out[user]
			switch kind {
			case syncframe.KindToken:
				c[0]++
			case syncframe.KindBackup:
				c[1]++
			}
			out[user] = c
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Server) createUser(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseUserRequest(body)
	if err != nil {
		return 0, nil, err
	}
	u := User{Name: q.Name, Mail: q.Mail, Scopes: q.Scopes, Created: s.now().UTC()}
	v := userView(u, 0, 0)
	out, err := s.converge(r.Context(), actor, "user.create", "user/"+u.Name, reasonOf(r, q.Reason), func(x *txn) error {
		old, err := x.user(u.Name)
		switch {
		case isNotFound(err):
			return x.putUser(u)
		case err != nil:
			return err
		}
		// Adding a user who exists as asked changes nothing; one who differs is refused, so a
		// typo in a playbook does not rewrite a user: user set changes one on purpose.
		if diff := userDiff(old, u); diff != "" {
			return conflict("user %q exists with other attributes (%s); change them with user set", u.Name, diff)
		}
		c, err := counts(x, u.Name)
		v = userView(old, c[u.Name][0], c[u.Name][1])
		return cmp.Or(err, errUnchanged)
	})
	status := http.StatusCreated
	if !out.Changed {
		status = http.StatusOK
	}
	return status, registryapi.UserResult{User: v, Outcome: out}, err
}

// userDiff says how the user has differs from want in mail and scopes ("" when not at all).
func userDiff(has, want User) string {
	var d []string
	show := func(ss []string) string { return cmp.Or(strings.Join(ss, ","), "none") }
	if has.Mail != want.Mail {
		d = append(d, fmt.Sprintf("mail %s, not %s", cmp.Or(has.Mail, "none"), cmp.Or(want.Mail, "none")))
	}
	if !slices.Equal(has.Scopes, want.Scopes) {
		d = append(d, fmt.Sprintf("scopes %s, not %s", show(has.Scopes), show(want.Scopes)))
	}
	return strings.Join(d, "; ")
}

func (s *Server) listUsers(r *http.Request, _ string, _ []byte) (int, any, error) {
	out, admin := []registryapi.User{}, adminOf(r.Context())
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		c, err := counts(tx, "")
		if err != nil {
			return err
		}
		return tx.Range(prefixUser, func(kvp kv.KeyValue) error {
			u, err := s.decodeUser(kvp.Key, kvp.Value)
			if errors.Is(err, errBadRecord) {
				return nil // refused and logged
			}
			if err != nil {
				return err
			}
			if !admin.allowsScopes(u.Scopes) {
				return nil
			}
			out = append(out, userView(u, c[u.Name][0], c[u.Name][1]))
			return nil
		})
	})
	return http.StatusOK, out, err
}

func (s *Server) getUser(r *http.Request, _ string, _ []byte) (int, any, error) {
	var v registryapi.User
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		u, err := (&txn{Txn: tx, s: s}).user(r.PathValue("name"))
		if err != nil {
			return err
		}
		c, err := counts(tx, u.Name)
		v = userView(u, c[u.Name][0], c[u.Name][1])
		return err
	})
	return http.StatusOK, v, err
}

func (s *Server) patchUser(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseUserPatch(body)
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	var v registryapi.User
	out, err := s.converge(r.Context(), actor, "user.update", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		if (q.Mail == nil || *q.Mail == u.Mail) && (q.Scopes == nil || slices.Equal(u.Scopes, *q.Scopes)) {
			c, err := counts(x, name)
			v = userView(u, c[name][0], c[name][1])
			return cmp.Or(err, errUnchanged)
		}
		if q.Mail != nil {
			u.Mail = *q.Mail
		}
		if q.Scopes != nil && !slices.Equal(u.Scopes, *q.Scopes) {
			u.Scopes = *q.Scopes
			// The records carry the scopes in the clear: rewrite them all in this revision.
			var keys []string
			var raws [][]byte
			if err := x.userRecords(name, func(key string, raw []byte) error {
				keys, raws = append(keys, key), append(raws, raw)
				return nil
			}); err != nil {
				return err
			}
			for i, key := range keys {
				w, err := x.s.unwrap(key, raws[i])
				if errors.Is(err, errBadRecord) {
					continue // refused and logged; it stays refused
				}
				if err != nil {
					return err
				}
				w.Scopes = u.Scopes
				b, err := wrap(x.s.sealer, key, w)
				if err != nil {
					return err
				}
				if err := x.Put(prefixRec+key, b); err != nil {
					return err
				}
			}
		}
		c, err := counts(x, name)
		v = userView(u, c[name][0], c[name][1])
		if err != nil {
			return err
		}
		return x.putUser(u)
	})
	return http.StatusOK, registryapi.UserResult{User: v, Outcome: out}, err
}

func (s *Server) deleteUser(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	var nt, nc int
	var u User
	_, err := s.change(r.Context(), actor, "user.delete", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		var err error
		if u, err = x.user(name); err != nil {
			return err
		}
		if nt, nc, err = x.deleteRecords(name, func(string) bool { return true }); err != nil {
			return err
		}
		if err := x.dropEnrollState(name); err != nil {
			return err
		}
		return x.Delete(prefixUser + name)
	})
	if err != nil {
		return 0, nil, err
	}
	// The record is gone: the notice goes to the address read in the deleting transaction, and
	// only when the user had a second factor to lose.
	if nt+nc > 0 {
		s.notifyUser(u, "second factor removed", fmt.Sprintf("Your account was removed from the second factor registry, "+
			"with its tokens (%d) and backup codes (%d); they no longer work.", nt, nc), "administrator "+actor)
	}
	return http.StatusOK, registryapi.Removed{Name: name, Tokens: nt, BackupCodes: nc, Outcome: registryapi.Outcome{Changed: true}}, nil
}

func (s *Server) listTokens(r *http.Request, _ string, _ []byte) (int, any, error) {
	out := []token.Info{}
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		x := &txn{Txn: tx, s: s}
		if _, err := x.user(r.PathValue("name")); err != nil {
			return err
		}
		toks, err := x.tokens(r.PathValue("name"))
		for _, t := range toks {
			out = append(out, t.Info())
		}
		return err
	})
	return http.StatusOK, out, err
}

// newTokenID returns a random token id that the user does not have.
func (s *Server) newTokenID(taken []token.Token) (string, error) {
	return token.NewID(s.rand, func(id string) bool { return token.HasID(taken, id) })
}

func (s *Server) createToken(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseTokenRequest(body)
	if err != nil {
		return 0, nil, err
	}
	generated := q.secret == nil
	if generated {
		if q.secret, err = totp.NewSecret(s.rand, 0); err != nil {
			return 0, nil, err
		}
	}
	name := r.PathValue("name")
	var t token.Token
	_, err = s.change(r.Context(), actor, "token.create", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		toks, err := x.tokens(name)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(toks, func(o token.Token) bool { return bytes.Equal(o.Secret, q.secret) }) {
			return conflict("user %q already has a token with this secret", name)
		}
		id, err := s.newTokenID(toks)
		if err != nil {
			return err
		}
		t = token.Token{User: name, ID: id, Name: q.Name, Algorithm: q.params.Algorithm, Digits: q.params.Digits,
			Period: q.params.Period, Secret: q.secret, State: token.State(q.State), Created: s.now().UTC()}
		if t.Name == "" {
			t.Name = token.DefaultName(toks)
		}
		return x.putToken(u, t)
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), name, "new token added", fmt.Sprintf("A token %q (id %s, %s) was added to your account.", t.Name, t.ID, t.State), "administrator "+actor)
	info := registryapi.AddedToken{Info: t.Info()}
	if generated {
		info.Secret = totp.EncodeSecret(t.Secret)
		k := totp.Key{Issuer: s.cfg.Issuer, Account: name, Secret: t.Secret, Params: t.Params()}
		if k.Validate() == nil {
			info.URI = k.URI()
		}
	}
	return http.StatusCreated, info, nil
}

// getToken reads one token of a user in x, or a 404.
func (x *txn) token(user, id string) (User, token.Token, error) {
	var t token.Token
	u, err := x.user(user)
	if err != nil {
		return u, t, err
	}
	key := syncframe.TokenKey(user, id)
	kvp, err := x.Get(prefixRec + key)
	if err != nil {
		return u, t, notFound("user %q has no token %q", clip(user), clip(id))
	}
	_, v, err := x.s.openValue(key, kvp.Value)
	if err != nil {
		return u, t, err
	}
	return u, t, json.Unmarshal(v, &t)
}

func (s *Server) patchToken(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseTokenPatch(body)
	if err != nil {
		return 0, nil, err
	}
	name, id := r.PathValue("name"), r.PathValue("id")
	var t, before token.Token
	out, err := s.converge(r.Context(), actor, "token.update", "token/"+name+"/"+id, reasonOf(r, q.Reason), func(x *txn) error {
		u, tok, err := x.token(name, id)
		if err != nil {
			return err
		}
		before, t = tok, tok
		if (q.State == nil || token.State(*q.State) == tok.State) && (q.Name == nil || *q.Name == tok.Name) {
			return errUnchanged // disabling a disabled token, say
		}
		if q.State != nil {
			to := token.State(*q.State)
			// A pending token was never verified: disabling it and enabling it again would
			// activate it without a code, so it can be neither; nor can a token become pending.
			if to != tok.State && (tok.State == token.Pending || to == token.Pending) {
				return conflict("the token is pending: it becomes active only when a code from it is verified; remove it and add it again")
			}
			tok.State = to
		}
		if q.Name != nil {
			tok.Name = *q.Name
		}
		t = tok
		if tok.State == token.Disabled && before.State != token.Disabled {
			// A lost or stolen device: a portal session signed in with its code ends too.
			if err := x.dropSessions(name); err != nil {
				return err
			}
		}
		return x.putToken(u, tok)
	})
	if err != nil {
		return 0, nil, err
	}
	if subject, what := tokenChange(before, t); subject != "" {
		s.notify(r.Context(), name, subject, what, "administrator "+actor)
	}
	return http.StatusOK, registryapi.TokenResult{Info: t.Info(), Outcome: out}, nil
}

// tokenChange describes an admin's change of a token's state or name for the user's notice; an
// empty subject means nothing changed.
func tokenChange(before, after token.Token) (subject, what string) {
	renamed := after.Name != before.Name
	switch {
	case after.State != before.State && after.State == token.Disabled:
		subject = "token disabled"
		what = fmt.Sprintf("Your token %q (id %s) was disabled; its codes no longer work.", before.Name, before.ID)
	case after.State != before.State:
		subject = "token enabled"
		what = fmt.Sprintf("Your token %q (id %s) was enabled; its codes work for logins again.", before.Name, before.ID)
	case renamed:
		return "token renamed", fmt.Sprintf("Your token %q (id %s) was renamed to %q.", before.Name, before.ID, after.Name)
	default:
		return "", ""
	}
	if renamed {
		what += fmt.Sprintf("\nIt was renamed to %q.", after.Name)
	}
	return subject, what
}

func (s *Server) deleteToken(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name, id := r.PathValue("name"), r.PathValue("id")
	var t token.Token
	_, err := s.change(r.Context(), actor, "token.delete", "token/"+name+"/"+id, reasonOf(r, q.Reason), func(x *txn) error {
		u, tok, err := x.token(name, id)
		if err != nil {
			return err
		}
		t = tok
		return x.deleteToken(u, id)
	})
	if err == nil {
		s.notify(r.Context(), name, "token removed", fmt.Sprintf("Your token %q (id %s) was removed; its codes no longer work.", t.Name, t.ID), "administrator "+actor)
	}
	return http.StatusOK, registryapi.TokenResult{Info: t.Info(), Outcome: registryapi.Outcome{Changed: err == nil}}, err
}

func (s *Server) resetUser(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	var nt, nc int
	_, err := s.change(r.Context(), actor, "user.reset", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		if _, err := x.user(name); err != nil {
			return err
		}
		var err error
		if nt, nc, err = x.deleteRecords(name, func(string) bool { return true }); err != nil {
			return err
		}
		return x.dropEnrollState(name)
	})
	if err == nil {
		s.notify(r.Context(), name, "second factor reset", fmt.Sprintf("All tokens (%d) and backup codes (%d) of your account were removed; you can enroll a new token.", nt, nc), "administrator "+actor)
	}
	return http.StatusOK, registryapi.Removed{Name: name, Tokens: nt, BackupCodes: nc, Outcome: registryapi.Outcome{Changed: err == nil}}, err
}

// unlockUser answers POST /v1/admin/users/{name}/unlock: it clears the user's failures, the
// wrong codes of logins on every node and the failed proofs of self-service changes, in the
// record every node receives (each node then drops the failures it counted before the unlock),
// and the failed portal sign-ins by code, kept at the registry only.
func (s *Server) unlockUser(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	var f, signIns token.Failures
	out, err := s.converge(r.Context(), actor, "user.unlock", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		f = token.Failures{}
		u, err := x.user(name)
		if err != nil {
			return err
		}
		sf, err := x.sharedFailures(name)
		if err != nil {
			return err
		}
		if signIns, err = x.signInFailures(name); err != nil {
			return err
		}
		// A user without failures and without a back-off is not locked: nothing to unlock.
		shared := sf.Count != 0 || !sf.Until.IsZero()
		if !shared && signIns == (token.Failures{}) {
			return errUnchanged
		}
		if signIns != (token.Failures{}) {
			if err := x.Delete(prefixSignInFail + name); err != nil {
				return err
			}
		}
		if shared {
			f, err = x.clearFailures(u, s.now(), true)
		}
		return err
	})
	return http.StatusOK, registryapi.Unlocked{Name: name, Failures: f.Count, SignInFailures: signIns.Count, Outcome: out}, err
}

// replaceCodes removes a user's codes for which drop is true, then writes recs.
func (x *txn) replaceCodes(u User, drop func(token.BackupCode) bool, recs []token.BackupCode) (int, error) {
	old, err := x.backupCodes(u.Name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range old {
		if drop(c) {
			if err := x.Delete(prefixRec + syncframe.BackupKey(u.Name, c.ID)); err != nil {
				return n, err
			}
			n++
		}
	}
	for _, c := range recs {
		if err := x.putRecord(u, syncframe.BackupKey(u.Name, c.ID), c); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Server) newBackupCodes(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	now := s.now()
	plain, recs, err := backupcode.New(s.rand, name, backupcode.Count, now)
	if err != nil {
		return 0, nil, err
	}
	_, err = s.change(r.Context(), actor, "backup-codes.create", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		// The old set goes, and expired passcodes with it; live passcodes stay.
		_, err = x.replaceCodes(u, func(c token.BackupCode) bool { return c.Expires.IsZero() || c.Expired(now) }, recs)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), name, "new backup codes", "A new set of backup codes was created for your account; the previous ones no longer work.", "administrator "+actor)
	return http.StatusOK, registryapi.BackupCodes{Codes: plain}, nil
}

func (s *Server) newPasscode(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parsePasscodeRequest(body)
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	now := s.now()
	plain, recs, err := backupcode.New(s.rand, name, 1, now)
	if err != nil {
		return 0, nil, err
	}
	recs[0].Expires = now.Add(q.ttl).UTC()
	_, err = s.change(r.Context(), actor, "passcode.create", "user/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		_, err = x.replaceCodes(u, func(c token.BackupCode) bool { return c.Expired(now) }, recs)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), name, "one-time passcode issued", fmt.Sprintf("A one-time passcode for your account was issued, valid until %s.", recs[0].Expires.Format("2006-01-02 15:04 MST")), "administrator "+actor)
	return http.StatusOK, registryapi.Passcode{Code: plain[0], Expires: recs[0].Expires}, nil
}
