package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

// Request body bounds.
const (
	maxBody       = 64 << 10
	maxImportBody = 8 << 20
)

// adminFunc handles one admin request; actor is the admin's name. It returns the status and body
// of a success, or an error (a *refusal.Error for the client, anything else a 500).
type adminFunc func(r *http.Request, actor string, body []byte) (int, any, error)

// Which part of the store an admin endpoint touches, for scoped admin tokens.
type adminTarget int

const (
	// targetAny: the handler checks or filters by scope itself (lists, creations).
	targetAny adminTarget = iota
	// targetUser: the user {name}, whose scopes the admin must hold.
	targetUser
	// targetNode: the node {name}, whose scope the admin must hold.
	targetNode
	// targetAll: every scope at once (the audit log, imports, compaction): unscoped admins only.
	targetAll
)

// adminRoutes is the one table of admin endpoints with the role each needs
// (docs/registry-admin.md shows it).
func (s *Server) adminRoutes(mux *http.ServeMux) {
	h := func(pattern string, need Role, on adminTarget, limit int64, f adminFunc) {
		mux.Handle(pattern, s.admin(need, on, limit, f))
	}
	h("POST /v1/admin/users", RoleFull, targetAny, maxBody, s.createUser)
	h("GET /v1/admin/users", RoleReadOnly, targetAny, maxBody, s.listUsers)
	h("GET /v1/admin/users/{name}", RoleReadOnly, targetUser, maxBody, s.getUser)
	h("PATCH /v1/admin/users/{name}", RoleFull, targetUser, maxBody, s.patchUser)
	h("DELETE /v1/admin/users/{name}", RoleFull, targetUser, maxBody, s.deleteUser)
	h("GET /v1/admin/users/{name}/tokens", RoleReadOnly, targetUser, maxBody, s.listTokens)
	h("POST /v1/admin/users/{name}/tokens", RoleFull, targetUser, maxBody, s.createToken)
	h("PATCH /v1/admin/users/{name}/tokens/{id}", RoleHelpdesk, targetUser, maxBody, s.patchToken)
	h("DELETE /v1/admin/users/{name}/tokens/{id}", RoleHelpdesk, targetUser, maxBody, s.deleteToken)
	h("POST /v1/admin/users/{name}/reset", RoleHelpdesk, targetUser, maxBody, s.resetUser)
	h("POST /v1/admin/users/{name}/unlock", RoleHelpdesk, targetUser, maxBody, s.unlockUser)
	h("POST /v1/admin/users/{name}/backup-codes", RoleFull, targetUser, maxBody, s.newBackupCodes)
	h("POST /v1/admin/users/{name}/passcode", RoleHelpdesk, targetUser, maxBody, s.newPasscode)
	h("POST /v1/admin/users/{name}/hardware", RoleFull, targetUser, maxBody, s.assignHardware)
	h("POST /v1/admin/users/{name}/tokens/{id}/unassign", RoleFull, targetUser, maxBody, s.unassignHardware)
	h("GET /v1/admin/hardware", RoleReadOnly, targetAll, maxBody, s.listHardware)
	h("POST /v1/admin/nodes", RoleFull, targetAny, maxBody, s.createNode)
	h("GET /v1/admin/nodes", RoleReadOnly, targetAny, maxBody, s.listNodes)
	h("DELETE /v1/admin/nodes/{name}", RoleFull, targetNode, maxBody, s.deleteNode)
	long := func(pattern string, need Role, on adminTarget, limit int64, f adminFunc) {
		mux.Handle(pattern, longWork(s.admin(need, on, limit, f)))
	}
	long("POST /v1/admin/import/csv", RoleFull, targetAll, maxImportBody, s.importCSV)
	long("POST /v1/admin/import/google-authenticator", RoleFull, targetAll, maxBody, s.importGA)
	long("POST /v1/admin/import/hardware", RoleFull, targetAll, maxImportBody, s.importHardware)
	h("GET /v1/admin/audit", RoleReadOnly, targetAll, maxBody, s.listAudit)
	h("GET /v1/admin/audit/verify", RoleReadOnly, targetAny, maxBody, s.verifyAudit)
	long("POST /v1/admin/compact", RoleFull, targetAll, maxBody, s.compact)
	h("GET /v1/admin/whoami", RoleReadOnly, targetAny, maxBody, s.whoami)
	mux.Handle("/v1/admin/", s.admin(RoleReadOnly, targetAny, maxBody, func(*http.Request, string, []byte) (int, any, error) {
		return 0, nil, notFound("no such admin endpoint")
	}))
}

// longWorkTimeout is the write deadline of the admin requests that may work for minutes: an
// import of a whole site (100,000 tokens into etcd take about two minutes) or a compaction.
const longWorkTimeout = 30 * time.Minute

// longWork lets h answer after [http] write_timeout, which bounds every other request: the
// request's body is still bounded by read_timeout, and the work by longWorkTimeout.
func longWork(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(longWorkTimeout))
		h.ServeHTTP(w, r)
	})
}

// admin wraps an adminFunc: admin authentication, the role and scope of the endpoint, a bounded
// body, JSON errors, one log line (a warning with the reason for a refusal; never the token).
func (s *Server) admin(need Role, on adminTarget, limit int64, f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, actor, reason := 0, "", ""
		defer func() {
			attrs := []any{"actor", actor, "method", r.Method, "path", r.URL.Path,
				"status", status, "remote", r.RemoteAddr, "took", time.Since(start).Round(time.Microsecond)}
			if reason != "" {
				s.log.Warn("admin request refused", append(attrs, "reason", reason)...)
				return
			}
			s.log.Info("admin request", attrs...)
		}()
		a, ref := s.authAdmin(r)
		actor = a.Name
		if ref == nil {
			ref = s.authorize(r, a, need, on)
		}
		if ref != nil {
			status, reason = ref.status, ref.reason
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="totp-registry admin"`)
			}
			writeError(w, status, ref.msg)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), adminKey{}, a))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			status = http.StatusRequestEntityTooLarge
			var mbe *http.MaxBytesError
			if !errors.As(err, &mbe) {
				status = http.StatusBadRequest
			}
			writeError(w, status, fmt.Sprintf("request body: larger than %d bytes or unreadable", limit))
			return
		}
		var v any
		status, v, err = f(r, actor, body)
		if err != nil {
			var re *refusal.Error
			var ar *adminRefusal
			switch {
			case errors.As(err, &ar):
				status, reason = ar.status, ar.reason
				writeError(w, status, ar.msg)
			case errors.As(err, &re):
				status = writeRefusal(w, re)
			case errors.Is(err, kv.ErrNotFound):
				status = http.StatusNotFound
				writeError(w, status, "not found")
			case errors.Is(err, context.Canceled):
				status = 499
			default:
				status = s.storeFailed(w, "admin request", err, "method", r.Method, "path", r.URL.Path)
			}
			return
		}
		writeJSON(w, status, v)
	})
}

// authorize checks an authenticated admin's role and, for a scoped admin, the scopes of the
// endpoint's target. A target that does not exist passes, for the handler's 404.
func (s *Server) authorize(r *http.Request, a AdminToken, need Role, on adminTarget) *adminRefusal {
	if a.Role < need {
		return adminForbidden("role "+a.Role.String(), "this admin token's role %s does not allow %s %s (it needs %s)",
			a.Role, r.Method, r.URL.Path, need)
	}
	if a.Scopes == nil || on == targetAny {
		return nil
	}
	if on == targetAll {
		return adminForbidden("scope", "%s %s spans every scope: it needs an admin token without scopes", r.Method, r.URL.Path)
	}
	var scopes []string
	name := r.PathValue("name")
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		x := &txn{Txn: tx, s: s}
		if on == targetNode {
			var n nodeRecord
			err := x.getJSON(prefixNode+name, &n)
			scopes = []string{n.Scope}
			return err
		}
		u, err := x.user(name)
		scopes = u.Scopes
		return err
	})
	switch {
	case errors.Is(err, kv.ErrNotFound) || isNotFound(err):
		return nil
	case err != nil:
		// The store did not answer: refuse without guessing; the client may retry.
		return &adminRefusal{status: http.StatusServiceUnavailable, reason: "scope check: " + err.Error(),
			msg: "the registry's store does not answer; try again shortly"}
	}
	what := "user " + name
	if on == targetNode {
		what = "node " + name
	}
	return scopeRefusal(a, what, scopes)
}

// change runs fn in one kv.Update with its audit record: one admin change, one revision. For a
// scoped admin the target's scopes are checked in the same transaction, before and after fn (a
// user moved or created out of the admin's scopes is refused, and a concurrent move is seen).
func (s *Server) change(ctx context.Context, actor, action, target, reason string, fn func(x *txn) error) (int64, error) {
	now, a := s.now(), adminOf(ctx)
	return s.store.Update(ctx, func(t kv.Txn) error {
		x := &txn{Txn: t, s: s}
		if err := x.prefetchTarget(target); err != nil {
			return err
		}
		if err := x.targetInScope(a, target); err != nil {
			return err
		}
		if err := fn(x); err != nil {
			return err
		}
		if err := x.targetInScope(a, target); err != nil {
			return err
		}
		return x.audit(now, actor, action, target, reason)
	})
}

// targetOf splits an audit target ("user/NAME", "token/NAME/ID", "node/NAME") into its kind and
// the name of the user or node.
func targetOf(target string) (kind, name string) {
	kind, rest, _ := strings.Cut(target, "/")
	name, _, _ = strings.Cut(rest, "/")
	return kind, name
}

// prefetchTarget reads in one request what a change of target reads of it and the audit head
// that every change writes (on etcd: one round trip instead of one per key).
func (x *txn) prefetchTarget(target string) error {
	keys := []string{keyAuditHead}
	var prefixes []string
	kind, name := targetOf(target)
	switch {
	case name == "" || !validName(name, maxNameLen):
	case kind == "user" || kind == "token":
		keys, prefixes = userReads(keys, prefixes, name)
	case kind == "node":
		keys = append(keys, prefixNode+name)
	}
	return kv.Prefetch(x.Txn, keys, prefixes)
}

// errUnchanged, returned by the fn of change, says that the desired state already holds: nothing
// is written then, not even the audit record, so the store gets no revision (converge).
var errUnchanged = errors.New("unchanged")

// converge is change for a request whose desired state may already hold, the one place of that
// rule (registryapi.Outcome): fn returns errUnchanged then, and converge reports no change.
func (s *Server) converge(ctx context.Context, actor, action, target, reason string, fn func(x *txn) error) (registryapi.Outcome, error) {
	_, err := s.change(ctx, actor, action, target, reason, fn)
	if errors.Is(err, errUnchanged) {
		return registryapi.Outcome{}, nil
	}
	return registryapi.Outcome{Changed: err == nil}, err
}

// targetInScope refuses a change of a scoped admin to a user ("user/NAME", "token/NAME/ID") or
// node ("node/NAME") outside its scopes; one that does not exist (yet, or any more) passes.
func (x *txn) targetInScope(a AdminToken, target string) error {
	if a.Scopes == nil {
		return nil
	}
	kind, name := targetOf(target)
	var scopes []string
	var err error
	switch kind {
	case "user", "token":
		var u User
		u, err = x.user(name)
		scopes = u.Scopes
	case "node":
		var n nodeRecord
		err = x.getJSON(prefixNode+name, &n)
		scopes = []string{n.Scope}
	default:
		return nil // targetAll endpoints: unscoped admins only (authorize)
	}
	switch {
	case errors.Is(err, kv.ErrNotFound) || isNotFound(err):
		return nil
	case err != nil:
		return err
	}
	if r := scopeRefusal(a, kind+" "+name, scopes); r != nil {
		return r
	}
	return nil
}

// reasonOf is the X-Reason header, or the body's reason field.
func reasonOf(r *http.Request, field string) string {
	if h := r.Header.Get("X-Reason"); h != "" {
		return h
	}
	return field
}

// queryInt reads an integer query parameter with a default and bounds.
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s: want a number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// listAudit answers GET /v1/admin/audit?after=SEQ&limit=N.
func (s *Server) listAudit(r *http.Request, _ string, _ []byte) (int, any, error) {
	after, err := queryInt(r, "after", 0, 0, 1<<62)
	if err != nil {
		return 0, nil, err
	}
	limit, err := queryInt(r, "limit", 100, 1, 10000)
	if err != nil {
		return 0, nil, err
	}
	recs, err := s.Audit(r.Context(), after, int(limit))
	return http.StatusOK, recs, err
}

// verifyAudit answers GET /v1/admin/audit/verify.
func (s *Server) verifyAudit(r *http.Request, _ string, _ []byte) (int, any, error) {
	v, err := s.VerifyAudit(r.Context())
	return http.StatusOK, v, err
}

// compactRequest is the body of POST /v1/admin/compact.
type compactRequest struct {
	Keep   int64  `json:"keep"`
	Reason string `json:"reason"`
}

func parseCompactRequest(body []byte) (compactRequest, error) {
	var q compactRequest
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if q.Keep < 0 || q.Keep > 1e12 {
		return q, badRequest("keep: want a number of revisions >= 0")
	}
	return q, nil
}

// compact answers POST /v1/admin/compact: history older than the last keep revisions goes.
func (s *Server) compact(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseCompactRequest(body)
	if err != nil {
		return 0, nil, err
	}
	rev, err := s.change(r.Context(), actor, "compact", "history", reasonOf(r, q.Reason),
		func(*txn) error { return nil })
	if err != nil {
		return 0, nil, err
	}
	if to := rev - q.Keep; to > s.store.CompactedRev() {
		if err := s.store.Compact(r.Context(), to); err != nil {
			return 0, nil, err
		}
	}
	return http.StatusOK, registryapi.CompactResult{Revision: rev, Compacted: s.store.CompactedRev()}, nil
}
