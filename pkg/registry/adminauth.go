package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// Role is what an admin token may do. Roles are ordered: each allows what the ones below it do.
// docs/registry-admin.md has the table of endpoints by role.
type Role int

// Admin roles. A Server takes the zero Role for RoleFull (Options.Admins).
const (
	// RoleReadOnly reads users, tokens, nodes and the audit log, and verifies the audit chain.
	RoleReadOnly Role = iota + 1
	// RoleHelpdesk adds what restores a user's access on the phone: passcodes, unlock, reset,
	// disabling, enabling, renaming and removing a token.
	RoleHelpdesk
	// RoleFull adds everything else: users, new tokens and backup codes, nodes, imports, compaction.
	RoleFull
)

var roleNames = []string{RoleReadOnly: "read-only", RoleHelpdesk: "helpdesk", RoleFull: "full"}

func (r Role) String() string {
	if r < RoleReadOnly || r > RoleFull {
		return "none"
	}
	return roleNames[r]
}

// AdminToken is one accepted admin bearer token: the admin's name (the audit actor), the SHA-256
// of the token, its role, its scopes (nil: every scope) and its expiry (zero: none).
type AdminToken struct {
	Name    string
	Hash    [32]byte
	Role    Role
	Scopes  []string
	Expires time.Time
}

// allowsScopes says whether the admin may see and change something visible in scopes: an
// unscoped admin anything; a scoped admin only what has at least one scope and all of them among
// the admin's (a user of clusters c1 and c2 needs an admin of both, since a change to the user
// reaches the nodes of both).
func (a *AdminToken) allowsScopes(scopes []string) bool {
	if a.Scopes == nil {
		return true
	}
	if len(scopes) == 0 {
		return false
	}
	for _, sc := range scopes {
		if !slices.Contains(a.Scopes, sc) {
			return false
		}
	}
	return true
}

// LoadAdminTokens reads the admin tokens file (root 0600); ParseAdminTokens has its format.
func LoadAdminTokens(path string) ([]AdminToken, error) {
	data, err := readSafe(path, securefile.Secret)
	if err != nil {
		return nil, err
	}
	toks, err := ParseAdminTokens(data)
	if err != nil {
		return nil, fmt.Errorf("admin tokens file %s: %w", path, err)
	}
	return toks, nil
}

// ParseAdminTokens parses the admin tokens file's content: per line
//
//	NAME SHA256HEX [role=read-only|helpdesk|full] [scopes=SCOPE,...] [expires=YYYY-MM-DD|RFC3339]
//
// blank lines and '#' comments skipped. Without role the admin is full, without scopes unscoped,
// without expires never expiring, so "NAME SHA256HEX" stays a full admin. A date expires at the
// end of that day (UTC). An unknown or repeated field fails the file: a misspelt limit must not
// give an admin more than meant.
func ParseAdminTokens(data []byte) ([]AdminToken, error) {
	var toks []AdminToken
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !validName(f[0], 64) {
			return nil, fmt.Errorf("line %d: want NAME SHA256HEX [role=R] [scopes=S,...] [expires=DATE]", n)
		}
		b, err := hex.DecodeString(f[1])
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("line %d: the hash must be 64 hex digits (SHA-256 of the token)", n)
		}
		t := AdminToken{Name: f[0], Role: RoleFull}
		copy(t.Hash[:], b)
		if err := t.parseFields(f[2:]); err != nil {
			return nil, fmt.Errorf("line %d (%s): %w", n, t.Name, err)
		}
		toks = append(toks, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return toks, nil
}

// parseFields reads the optional KEY=VALUE fields of an admin token line.
func (t *AdminToken) parseFields(fields []string) error {
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return fmt.Errorf("%q: want KEY=VALUE (role, scopes, expires)", f)
		}
		if seen[k] {
			return fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		switch k {
		case "role":
			i := slices.Index(roleNames, v)
			if i < int(RoleReadOnly) {
				return fmt.Errorf("role %q: want read-only, helpdesk or full", v)
			}
			t.Role = Role(i)
		case "scopes":
			t.Scopes = strings.Split(v, ",")
			for _, sc := range t.Scopes {
				if !validScope(sc) {
					return fmt.Errorf("scopes %q: letters, digits, '.', '_' and '-', separated by ','", v)
				}
			}
			slices.Sort(t.Scopes)
			t.Scopes = slices.Compact(t.Scopes)
		case "expires":
			if d, err := time.Parse(time.DateOnly, v); err == nil {
				t.Expires = d.AddDate(0, 0, 1)
			} else if ts, err := time.Parse(time.RFC3339, v); err == nil {
				t.Expires = ts
			} else {
				return fmt.Errorf("expires %q: want YYYY-MM-DD or an RFC 3339 time", v)
			}
		default:
			return fmt.Errorf("unknown field %q (role, scopes, expires)", k)
		}
	}
	return nil
}

// admins holds the accepted admin tokens, swapped whole when the file is reloaded.
type admins struct{ p atomic.Pointer[[]AdminToken] }

// set takes toks; a token without a Role is full, as a line without role= is.
func (a *admins) set(toks []AdminToken) {
	toks = slices.Clone(toks)
	for i := range toks {
		if toks[i].Role == 0 {
			toks[i].Role = RoleFull
		}
	}
	a.p.Store(&toks)
}

// lookup finds the admin of a bearer token in constant time over the list.
func (a *admins) lookup(tok string) (AdminToken, bool) {
	sum := sha256.Sum256([]byte(tok))
	var found AdminToken
	ok := false
	for _, t := range *a.p.Load() {
		if subtle.ConstantTimeCompare(sum[:], t.Hash[:]) == 1 {
			found, ok = t, true
		}
	}
	return found, ok
}

// SetAdmins replaces the accepted admin tokens (a reload of the admin tokens file).
func (s *Server) SetAdmins(toks []AdminToken) { s.admins.set(toks) }

// adminRefusal is why an admin request was refused: its status, the client's sentence and the
// log's reason.
type adminRefusal struct {
	status      int
	msg, reason string
}

func (e *adminRefusal) Error() string { return e.msg }

func adminForbidden(reason, format string, args ...any) *adminRefusal {
	return &adminRefusal{status: http.StatusForbidden, msg: fmt.Sprintf(format, args...), reason: reason}
}

// authAdmin returns the admin of the request's bearer token, or why it is refused (401).
func (s *Server) authAdmin(r *http.Request) (AdminToken, *adminRefusal) {
	tok, ok := bearer(r)
	if !ok {
		return AdminToken{}, &adminRefusal{status: http.StatusUnauthorized, msg: "admin authentication required", reason: "no bearer token"}
	}
	a, ok := s.admins.lookup(tok)
	switch {
	case !ok:
		return a, &adminRefusal{status: http.StatusUnauthorized, msg: "admin authentication required", reason: "unknown token"}
	case !a.Expires.IsZero() && !s.now().Before(a.Expires):
		return a, &adminRefusal{status: http.StatusUnauthorized, msg: "this admin token has expired",
			reason: "expired " + a.Expires.UTC().Format(time.RFC3339)}
	}
	return a, nil
}

// adminKey is the context key of the request's admin.
type adminKey struct{}

// adminOf is the admin of an admin request (set by Server.admin).
func adminOf(ctx context.Context) AdminToken {
	a, _ := ctx.Value(adminKey{}).(AdminToken)
	return a
}

// scopeRefusal is the refusal of admin a for something visible in scopes, or nil.
func scopeRefusal(a AdminToken, what string, scopes []string) *adminRefusal {
	if a.allowsScopes(scopes) {
		return nil
	}
	return adminForbidden("scope", "this admin token is for scopes %s, and %s is in %s",
		strings.Join(a.Scopes, ","), what, scopeList(scopes))
}

func scopeList(scopes []string) string {
	if len(scopes) == 0 {
		return "no scope"
	}
	return "scopes " + strings.Join(scopes, ",")
}

// whoami answers GET /v1/admin/whoami: the request's admin, role, scopes and expiry.
func (s *Server) whoami(r *http.Request, _ string, _ []byte) (int, any, error) {
	a := adminOf(r.Context())
	v := registryapi.AdminIdentity{Name: a.Name, Role: a.Role.String(), Scopes: a.Scopes}
	if !a.Expires.IsZero() {
		e := a.Expires.UTC()
		v.Expires = &e
	}
	return http.StatusOK, v, nil
}

// adminFileState is what a reload compares to see that the admin tokens file changed.
type adminFileState struct {
	ino, size    int64
	mtime, ctime time.Time
	missing      bool
}

func statAdminFile(path string) adminFileState {
	fi, err := os.Stat(path)
	if err != nil {
		return adminFileState{missing: true}
	}
	st := adminFileState{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
		st.ctime = time.Unix(sys.Ctim.Unix())
	}
	return st
}

// adminFilePoll is how often the admin tokens file is checked for a change.
const adminFilePoll = 2 * time.Second

// watchAdmins reloads the admin tokens file on a signal from hup and when its inode, size, mtime
// or ctime change, until ctx ends. A file that does not load keeps the tokens in force, and says
// why in the log.
func (s *Server) watchAdmins(ctx context.Context, path string, hup <-chan os.Signal) {
	last := statAdminFile(path)
	tick := time.NewTicker(adminFilePoll)
	defer tick.Stop()
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "SIGHUP"
		case <-tick.C:
			st := statAdminFile(path)
			if st == last {
				continue
			}
			last, why = st, "file changed"
		}
		toks, err := LoadAdminTokens(path)
		if err != nil {
			s.log.Error("admin tokens not reloaded: the tokens in force stay", "file", path, "trigger", why, "err", err)
			continue
		}
		s.SetAdmins(toks)
		s.log.Info("admin tokens reloaded", "file", path, "trigger", why, "admins", len(toks))
	}
}
