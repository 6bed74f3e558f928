package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Key prefixes in the kv store (see doc.go).
const (
	prefixUser    = "user/"
	prefixRec     = "rec/"
	prefixNode    = "node/"
	prefixAudit   = "audit/"
	keyAuditHead  = "meta/audit-head"
	maxScopes     = 64
	maxMailLen    = 254
	maxNameLen    = 256
	maxScopeLen   = 64
	maxReasonLen  = 512
	maxNodeName   = 253
	credentialTag = "ptn1"
)

// Sealer encrypts record values at rest and authenticates every record (auth.go);
// *seal.Keyring is one.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
	MAC(purpose string, msg []byte) ([]byte, error)
	CheckMAC(purpose string, msg, tag []byte) error
}

// User is a registry user: who may log in on the nodes of its scopes.
type User struct {
	Name    string    `json:"name"`
	Mail    string    `json:"mail,omitempty"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
}

// nodeRecord is a registered login node. Hash is the hex SHA-256 of its credential secret.
type nodeRecord struct {
	Name    string    `json:"name"`
	Scope   string    `json:"scope"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// sealedRecord is the kv value of a node-visible record. MAC authenticates the key, the scopes
// and the sealed bytes (auth.go).
type sealedRecord struct {
	Scopes []string `json:"scopes"`
	Sealed []byte   `json:"sealed"`
	MAC    []byte   `json:"mac,omitempty"`
}

// visible reports whether a record of a user with scopes is seen by nodes of scope.
func visible(scopes []string, scope string) bool { return slices.Contains(scopes, scope) }

// sealValue seals a record value under its sync key and wraps it with its scopes.
func sealValue(s Sealer, key string, scopes []string, value []byte) ([]byte, error) {
	sealed, err := s.Seal(value, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", key, err)
	}
	return wrap(s, key, sealedRecord{Scopes: scopes, Sealed: sealed})
}

// decodeWrapper reads a sealed record's wrapper without opening it.
func decodeWrapper(raw []byte) (sealedRecord, error) {
	var w sealedRecord
	if err := json.Unmarshal(raw, &w); err != nil {
		return w, fmt.Errorf("decode sealed record: %w", err)
	}
	return w, nil
}

// openValue decodes, authenticates and opens a sealed record stored under the sync key.
func (s *Server) openValue(key string, raw []byte) (scopes []string, value []byte, err error) {
	w, err := s.unwrap(key, raw)
	if err != nil {
		return nil, nil, err
	}
	value, err = s.sealer.Open(w.Sealed, []byte(key))
	if err != nil {
		return nil, nil, fmt.Errorf("open sealed record %s: %w", key, err)
	}
	return w.Scopes, value, nil
}

// Name rules. User names and token ids become parts of sync keys ("t/USER/ID"), so they have no
// '/', no whitespace and no control characters.
func validName(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r <= 0x20 || r == 0x7f || (r >= 0x80 && r <= 0xa0) || r == '/' || r == '\\' {
			return false
		}
	}
	return token.ValidUser(s) == nil
}

// validScope: letters, digits, '.', '_' and '-'.
func validScope(s string) bool { return validIdent(s, maxScopeLen) }

// validNodeName: a host name (letters, digits, '.', '_', '-'). The credential
// "ptn1.NODE.SECRET" is split at its last '.', and SECRET (base64url) has none.
func validNodeName(s string) bool { return validIdent(s, maxNodeName) }

func validIdent(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// cleanReason makes an audit reason safe (token.Clean) and bounded.
func cleanReason(s string) string {
	s = token.Clean(strings.TrimSpace(s))
	if len(s) > maxReasonLen {
		s = strings.ToValidUTF8(s[:maxReasonLen], "")
	}
	return s
}

// normScopes checks, sorts and deduplicates scopes.
func normScopes(in []string) ([]string, error) {
	if len(in) > maxScopes {
		return nil, badRequest("at most %d scopes", maxScopes)
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !validScope(s) {
			return nil, badRequest("scope %q: letters, digits, '.', '_' and '-', at most %d", clip(s), maxScopeLen)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// txn is one admin transaction with the server's sealer at hand.
type txn struct {
	kv.Txn
	s *Server
}

func (x *txn) getJSON(key string, v any) error {
	kvp, err := x.Get(key)
	if err != nil {
		return err
	}
	return json.Unmarshal(kvp.Value, v)
}

func (x *txn) putJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return x.Put(key, b)
}

// user returns a user or a 404.
func (x *txn) user(name string) (User, error) {
	u, err := x.getUser(name)
	if errors.Is(err, kv.ErrNotFound) {
		return u, notFound("no user %q", clip(name))
	}
	return u, err
}

// userRecords calls fn for each of a user's records (tokens, backup codes, the enrolled mark,
// the failures),
// with the sync key and the raw wrapper.
func (x *txn) userRecords(user string, fn func(key string, raw []byte) error) error {
	for _, p := range syncframe.UserKeys(user) {
		if err := x.Range(prefixRec+p, func(kv kv.KeyValue) error {
			return fn(strings.TrimPrefix(kv.Key, prefixRec), kv.Value)
		}); err != nil {
			return err
		}
	}
	return nil
}

// tokens returns a user's tokens, opened.
func (x *txn) tokens(user string) ([]token.Token, error) {
	var out []token.Token
	err := x.Range(prefixRec+syncframe.TokenKey(user, ""), func(kvp kv.KeyValue) error {
		key := strings.TrimPrefix(kvp.Key, prefixRec)
		_, v, err := x.s.openValue(key, kvp.Value)
		if errors.Is(err, errBadRecord) {
			return nil // refused and logged
		}
		if err != nil {
			return err
		}
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// backupCodes returns a user's backup codes and passcodes, opened.
func (x *txn) backupCodes(user string) ([]token.BackupCode, error) {
	var out []token.BackupCode
	err := x.Range(prefixRec+syncframe.BackupKey(user, ""), func(kvp kv.KeyValue) error {
		key := strings.TrimPrefix(kvp.Key, prefixRec)
		_, v, err := x.s.openValue(key, kvp.Value)
		if errors.Is(err, errBadRecord) {
			return nil // refused and logged
		}
		if err != nil {
			return err
		}
		var c token.BackupCode
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// putRecord seals and writes one record of user u.
func (x *txn) putRecord(u User, key string, v any) error {
	value, err := json.Marshal(v)
	if err != nil {
		return err
	}
	raw, err := sealValue(x.s.sealer, key, u.Scopes, value)
	if err != nil {
		return err
	}
	return x.Put(prefixRec+key, raw)
}

// putToken validates and writes a token. An active token clears its user's enrolled mark.
func (x *txn) putToken(u User, t token.Token) error {
	if err := t.Validate(); err != nil {
		return badRequest("%v", err)
	}
	if t.State == token.Active {
		if err := ignoreNotFound(x.Delete(prefixRec + syncframe.EnrolledKey(u.Name))); err != nil {
			return err
		}
	}
	return x.putRecord(u, syncframe.TokenKey(t.User, t.ID), t)
}

// deleteToken removes token id of u, and its last proof step (enroll/step), whether the user or
// an administrator removes it. When it was u's last token, u gets the enrolled mark
// (token.Enrolled, a record nodes receive): without a token they are denied, not in grace,
// until an administrator's reset removes the mark with the rest.
func (x *txn) deleteToken(u User, id string) error {
	if err := x.Delete(prefixRec + syncframe.TokenKey(u.Name, id)); err != nil {
		return err
	}
	if err := ignoreNotFound(x.Delete(prefixStep + u.Name + "/" + id)); err != nil {
		return err
	}
	left, err := x.tokens(u.Name)
	if err != nil || len(left) > 0 {
		return err
	}
	return x.putRecord(u, syncframe.EnrolledKey(u.Name), token.Enrolled{User: u.Name, Since: x.s.now().UTC()})
}

// enrolled says whether user carries the enrolled mark.
func (x *txn) enrolled(user string) (bool, error) {
	_, err := x.Get(prefixRec + syncframe.EnrolledKey(user))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// deleteRecords removes a user's records that match keep == false; it returns the numbers of
// tokens and backup codes removed.
func (x *txn) deleteRecords(user string, match func(key string) bool) (tokens, codes int, err error) {
	var keys []string
	if err := x.userRecords(user, func(key string, _ []byte) error {
		if match(key) {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if err := x.Delete(prefixRec + k); err != nil {
			return 0, 0, err
		}
		switch k[0] {
		case syncframe.KindToken:
			tokens++
		case syncframe.KindBackup:
			codes++
		}
	}
	return tokens, codes, nil
}
