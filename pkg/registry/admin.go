package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

func (s *Server) adminRoutes(mux *http.ServeMux) {
	h := func(pattern string, limit int64, f adminFunc) { mux.Handle(pattern, s.admin(limit, f)) }
	h("POST /v1/admin/users", maxBody, s.createUser)
	h("GET /v1/admin/users", maxBody, s.listUsers)
	h("GET /v1/admin/users/{name}", maxBody, s.getUser)
	h("PATCH /v1/admin/users/{name}", maxBody, s.patchUser)
	h("DELETE /v1/admin/users/{name}", maxBody, s.deleteUser)
	h("GET /v1/admin/users/{name}/tokens", maxBody, s.listTokens)
	h("POST /v1/admin/users/{name}/tokens", maxBody, s.createToken)
	h("PATCH /v1/admin/users/{name}/tokens/{id}", maxBody, s.patchToken)
	h("DELETE /v1/admin/users/{name}/tokens/{id}", maxBody, s.deleteToken)
	h("POST /v1/admin/users/{name}/reset", maxBody, s.resetUser)
	h("POST /v1/admin/users/{name}/unlock", maxBody, s.unlockUser)
	h("POST /v1/admin/users/{name}/backup-codes", maxBody, s.newBackupCodes)
	h("POST /v1/admin/users/{name}/passcode", maxBody, s.newPasscode)
	h("POST /v1/admin/nodes", maxBody, s.createNode)
	h("GET /v1/admin/nodes", maxBody, s.listNodes)
	h("DELETE /v1/admin/nodes/{name}", maxBody, s.deleteNode)
	h("POST /v1/admin/import/csv", maxImportBody, s.importCSV)
	h("POST /v1/admin/import/google-authenticator", maxBody, s.importGA)
	h("GET /v1/admin/audit", maxBody, s.listAudit)
	h("GET /v1/admin/audit/verify", maxBody, s.verifyAudit)
	h("POST /v1/admin/compact", maxBody, s.compact)
	mux.Handle("/v1/admin/", s.admin(maxBody, func(*http.Request, string, []byte) (int, any, error) {
		return 0, nil, notFound("no such admin endpoint")
	}))
}

// admin wraps an adminFunc: admin authentication, a bounded body, JSON errors, one log line.
func (s *Server) admin(limit int64, f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, actor := 0, ""
		defer func() {
			s.log.Info("admin request", "actor", actor, "method", r.Method, "path", r.URL.Path,
				"status", status, "remote", r.RemoteAddr, "took", time.Since(start).Round(time.Microsecond))
		}()
		var ok bool
		if actor, ok = s.authAdmin(r); !ok {
			status = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Bearer realm="totp-registry admin"`)
			writeError(w, status, "admin authentication required")
			return
		}
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
			switch {
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

// change runs fn in one kv.Update with its audit record: one admin change, one revision.
func (s *Server) change(ctx context.Context, actor, action, target, reason string, fn func(x *txn) error) (int64, error) {
	now := s.now()
	return s.store.Update(ctx, func(t kv.Txn) error {
		x := &txn{Txn: t, s: s}
		if err := fn(x); err != nil {
			return err
		}
		return x.audit(now, actor, action, target, reason)
	})
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
