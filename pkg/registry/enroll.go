package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Terminal enrollment (docs/enrollment.md "Registry endpoints"). A node asks on behalf of a user
// of its scope, authenticated with the node's credential.
//
// A pending token is not a record: it lives under enroll/pending/USER/ID, sealed like records
// (additional data = that key), so nodes never receive it; finishing moves it to rec/t/USER/ID as
// an active token in one revision. Further enrollment state, all in the kv store so that it
// survives a restart and is written in the revision of the change it belongs to:
//
//	enroll/pending/USER/ID  pendingRecord: expiry in the clear, the token sealed
//	enroll/step/USER/ID     the claim of token ID: the last time step accepted anywhere, as a
//	                        proof, a finishing code or at a login on a node (logins.go)
//	enroll/fail/USER        failed proofs, before they moved to the synced u/USER/failures
//	enroll/signin-fail/USER failed portal sign-ins by code (token.Failures): never synced, so
//	                        that they lock only the portal's sign-in by code, never logins
//	enroll/boot/USER        a bootstrap code: salted hash (package backupcode), expiry
//
// The rules themselves are package enroll's; this file is its Store on the kv store, and the
// HTTP endpoints with their mail notices (sent after the commit).
const (
	prefixEnroll     = "enroll/"
	prefixPending    = "enroll/pending/"
	prefixStep       = "enroll/step/"
	prefixFail       = "enroll/fail/"
	prefixSignInFail = "enroll/signin-fail/"
	prefixBoot       = "enroll/boot/"
	sweepInterval    = time.Minute
	proofWindow      = 1 // steps either side, as at login
	maxEnrollBody    = 4 << 10
	maxAnswerLength  = 64
)

// Notifier takes mail notices; *mail.Sender is one. Send must not block.
type Notifier interface {
	Send(m mail.Message) bool
}

// enrollState is the server's enrollment machinery.
type enrollState struct {
	mail      Notifier
	closeMail func()
	sweepDone chan struct{}
}

// pendingRecord is the kv value of a pending token.
type pendingRecord struct {
	Expires time.Time `json:"expires"`
	Node    string    `json:"node"`
	Sealed  []byte    `json:"sealed"` // json of token.Token, sealed
	// Proof is proofCode for enroll.Pending.Proved.
	Proof string `json:"proof,omitempty"`
}

// proofCode marks a pending token begun with a proof of possession of an existing factor.
const proofCode = "code"

// Failed proofs follow the login rule (token.Limits): proofFreeFailures cost nothing, then a
// back-off from proofBackoff doubling up to [enroll] lockout, and [enroll] max_failures lock the
// user's proofs until a success... which a lock forbids, so until an administrator's unlock or
// reset. Waiting does not clear them.
const (
	proofFreeFailures = 3
	proofBackoff      = 30 * time.Second
)

// proofLimits is the failure rule of proofs under c.
func (c EnrollConfig) proofLimits() token.Limits {
	return token.Limits{FreeFailures: proofFreeFailures, InitialBackoff: proofBackoff,
		MaxBackoff: c.Lockout, LockoutAfter: c.MaxFailures}
}

// initEnroll sets up the mail notices: o.Notifier, or a mail.Sender from [mail].
func (s *Server) initEnroll(o Options) error {
	e := &enrollState{mail: o.Notifier, closeMail: func() {}, sweepDone: make(chan struct{})}
	if e.mail == nil {
		snd, err := mail.New(s.cfg.Mail, mail.Options{Logger: s.log, Now: s.now, Rand: s.rand})
		if err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		e.mail = snd
		e.closeMail = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := snd.Flush(ctx); err != nil {
				s.log.Warn("mail notices left unsent at shutdown", "err", err)
			}
			snd.Close()
		}
	}
	s.enroll = e
	return nil
}

// sweepLoop removes expired pending tokens every minute until ctx ends.
func (s *Server) sweepLoop(ctx context.Context) {
	defer close(s.enroll.sweepDone)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.sweepPending(ctx, ""); err != nil && ctx.Err() == nil {
				s.log.Error("sweep pending tokens", "err", err)
			}
			if s.portal != nil {
				if _, err := s.sweepSessions(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("sweep portal sessions", "err", err)
				}
			}
		}
	}
}

// stopEnroll waits for the sweeper (its context is already cancelled) and drains the mail queue.
func (s *Server) stopEnroll() {
	<-s.enroll.sweepDone
	s.enroll.closeMail()
}

func (s *Server) enrollRoutes(mux *http.ServeMux) {
	h := func(pattern string, f enrollFunc) { mux.Handle(pattern, s.enrollHandler(f)) }
	h("POST "+registryapi.PathEnrollBegin, s.enrollBegin)
	h("POST "+registryapi.PathEnrollFinish, s.enrollFinish)
	h("POST "+registryapi.PathEnrollRename, s.enrollRename)
	h("POST "+registryapi.PathEnrollRemove, s.enrollRemove)
	h("POST "+registryapi.PathEnrollBackupCodes, s.enrollBackupCodes)
	h("POST "+registryapi.PathEnrollBootstrap, s.enrollBootstrap)
}

// Request bodies (package registryapi), as local types for their checks. Each parse function
// decodes strictly and validates; the fuzz targets call them.
type (
	beginRequest     registryapi.BeginRequest
	finishRequest    registryapi.FinishRequest
	renameRequest    registryapi.RenameRequest
	removeRequest    registryapi.RemoveRequest
	proofRequest     registryapi.ProofRequest
	bootstrapRequest registryapi.BootstrapRequest
)

func checkUser(u string) error {
	if !validName(u, maxNameLen) {
		return badRequest("user: 1 to %d printable characters without '/' or spaces", maxNameLen)
	}
	return nil
}

func checkID(id string) error {
	if !validIdent(id, 64) {
		return badRequest("id: a token id (letters, digits, '.', '_', '-')")
	}
	return nil
}

// checkAnswer bounds a proof or code: at most 64 printable ASCII characters.
func checkAnswer(field, a string) error {
	if len(a) > maxAnswerLength || strings.IndexFunc(a, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return badRequest("%s: at most %d printable ASCII characters", field, maxAnswerLength)
	}
	return nil
}

// enrollRequest is a request body of the enrollment endpoints: check validates it after a strict
// decode.
type enrollRequest[T any] interface {
	*T
	check() error
}

// parseEnroll decodes an enrollment request strictly and checks it.
func parseEnroll[T any, P enrollRequest[T]](body []byte) (T, error) {
	var q T
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	return q, P(&q).check()
}

func (q *beginRequest) check() error {
	if err := checkUser(q.User); err != nil {
		return err
	}
	if q.Name != "" && token.CheckName(q.Name) != nil {
		return badRequest("name: 1 to 64 printable characters")
	}
	return checkAnswer("proof", q.Proof)
}

func (q *finishRequest) check() error {
	return firstErr(checkUser(q.User), checkID(q.ID), checkAnswer("code", q.Code))
}

func (q *renameRequest) check() error {
	var name error
	if token.CheckName(q.Name) != nil {
		name = badRequest("name: 1 to 64 printable characters")
	}
	return firstErr(checkUser(q.User), checkID(q.ID), name)
}

func (q *removeRequest) check() error {
	return firstErr(checkUser(q.User), checkID(q.ID), checkAnswer("proof", q.Proof))
}

func (q *proofRequest) check() error {
	return firstErr(checkUser(q.User), checkAnswer("proof", q.Proof))
}

func (q *bootstrapRequest) check() error { return checkUser(q.User) }

// firstErr is the first failed check, so a request gets one plain reason (and its status).
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func forbidden(format string, args ...any) error {
	return refusal.New(refusal.Refused, format, args...)
}

// errNotInScope answers for a user the node may not act for, known or not.
var errNotInScope = forbidden("this user is not known in this node's scope")

// enrollFunc handles one enrollment request of node n.
type enrollFunc func(r *http.Request, n nodeRecord, body []byte) (int, any, error)

// enrollHandler wraps an enrollFunc: node authentication, a bounded body, JSON errors, one log
// line (never the body).
func (s *Server) enrollHandler(f enrollFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n, ok := s.authNode(w, r)
		if !ok {
			return
		}
		status := 0
		defer func() {
			s.log.Info("enroll request", "node", n.Name, "path", r.URL.Path, "status", status,
				"took", time.Since(start).Round(time.Microsecond))
		}()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEnrollBody))
		if err != nil {
			status = http.StatusRequestEntityTooLarge
			writeError(w, status, fmt.Sprintf("request body: larger than %d bytes or unreadable", maxEnrollBody))
			return
		}
		var v any
		status, v, err = f(r, n, body)
		if err != nil {
			var re *refusal.Error
			switch {
			case errors.As(err, &re):
				status = writeRefusal(w, re)
			case errors.Is(err, context.Canceled):
				status = 499
			default:
				status = s.storeFailed(w, "enroll request", err, "node", n.Name, "path", r.URL.Path)
			}
			return
		}
		writeJSON(w, status, v)
	})
}

// enrollStore is the registry's kv store as an enroll.Store for the requests of one node: a
// user outside the node's scope is refused like an unknown one.
type enrollStore struct {
	s    *Server
	node nodeRecord
	// web binds the store to the web portal: every user the registry knows, no node scope.
	web bool
}

// service is the enrollment rules on the registry's store, for node n.
func (s *Server) service(n nodeRecord) *enroll.Service {
	return s.enrollService(&enrollStore{s: s, node: n})
}

// enrollService is the enrollment rules on st.
func (s *Server) enrollService(st *enrollStore) *enroll.Service {
	c := s.cfg.Enroll
	return &enroll.Service{Store: st, Rand: s.rand, Now: s.now, Log: s.log,
		Rules: enroll.Rules{MaxTokens: c.MaxTokens, Window: proofWindow, Limits: c.proofLimits(),
			Bootstrap: c.Bootstrap == BootstrapMail, Issuer: s.cfg.Issuer}}
}

func (st *enrollStore) Change(ctx context.Context, user string, now time.Time, fn func(enroll.Tx) error) error {
	_, err := st.s.store.Update(ctx, func(t kv.Txn) error {
		x := &txn{Txn: t, s: st.s}
		u, err := x.user(user)
		if isNotFound(err) || err == nil && !st.web && !visible(u.Scopes, st.node.Scope) {
			return errNotInScope
		}
		if err != nil {
			return err
		}
		actor := "node:" + st.node.Name
		if st.web {
			actor = actorPortal
		}
		return fn(&enrollTx{txn: x, u: u, node: st.node, actor: actor, now: now})
	})
	return err
}

// enrollTx is one user's enrollment records in a kv transaction.
type enrollTx struct {
	*txn
	u     User
	node  nodeRecord
	actor string // of the audit records
	now   time.Time
}

func (e *enrollTx) Tokens() ([]token.Token, error) { return e.tokens(e.u.Name) }
func (e *enrollTx) PutToken(t token.Token) error   { return e.putToken(e.u, t) }

func (e *enrollTx) DeleteToken(id string) error { return e.deleteToken(e.u, id) }

func (e *enrollTx) Pending() ([]enroll.Pending, error) {
	var out []enroll.Pending
	prefix := prefixPending + e.u.Name + "/"
	err := e.Range(prefix, func(kvp kv.KeyValue) error {
		var p pendingRecord
		if err := json.Unmarshal(kvp.Value, &p); err != nil {
			return fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		v, err := e.s.sealer.Open(p.Sealed, []byte(kvp.Key))
		if err != nil {
			return fmt.Errorf("open %s: %w", kvp.Key, err)
		}
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		out = append(out, enroll.Pending{Token: t, Expires: p.Expires, Proved: p.Proof == proofCode})
		return nil
	})
	return out, err
}

func (e *enrollTx) PutPending(p enroll.Pending) error {
	key := prefixPending + e.u.Name + "/" + p.Token.ID
	v, err := json.Marshal(p.Token)
	if err != nil {
		return err
	}
	sealed, err := e.s.sealer.Seal(v, []byte(key))
	if err != nil {
		return fmt.Errorf("seal %s: %w", key, err)
	}
	rec := pendingRecord{Expires: p.Expires.UTC(), Node: e.node.Name, Sealed: sealed}
	if p.Proved {
		rec.Proof = proofCode
	}
	return e.putJSON(key, rec)
}

func (e *enrollTx) DeletePending(id string) error {
	return e.Delete(prefixPending + e.u.Name + "/" + id)
}

// LastStep and SetStep are the token's claim (logins.go): a code proved here is refused at
// every login, and a code a login claimed is refused here.
func (e *enrollTx) LastStep(id string) (uint64, error) {
	c, err := e.claim(e.u.Name, id)
	return c.Step, err
}

func (e *enrollTx) SetStep(id string, step uint64) error {
	return e.setClaim(e.u.Name, id, token.Claim{Step: step, Node: "registry", At: e.now.UTC()})
}

// Failures and SetFailures are the user's one failure record (token.SharedFailures), which
// nodes count their wrong login codes in.
func (e *enrollTx) Failures() (token.Failures, error) {
	f, err := e.sharedFailures(e.u.Name)
	return f.Failures, err
}

func (e *enrollTx) SetFailures(f token.Failures) error {
	if f == (token.Failures{}) {
		_, err := e.clearFailures(e.u, e.now, false)
		return err
	}
	cur, err := e.sharedFailures(e.u.Name)
	if err != nil {
		return err
	}
	cur.Failures = f
	return e.putSharedFailures(e.u, cur)
}

// SignInFailures and SetSignInFailures are the user's failed portal sign-ins, apart from the
// record nodes read.
func (e *enrollTx) SignInFailures() (token.Failures, error) { return e.signInFailures(e.u.Name) }

func (e *enrollTx) SetSignInFailures(f token.Failures) error {
	if f == (token.Failures{}) {
		// Only a record there is is deleted: a sign-in with nothing to clear writes nothing.
		if cur, err := e.signInFailures(e.u.Name); err != nil || cur == (token.Failures{}) {
			return err
		}
		return e.Delete(prefixSignInFail + e.u.Name)
	}
	return e.putJSON(prefixSignInFail+e.u.Name, f)
}

// signInFailures reads a user's failed portal sign-ins (none when there is no record).
func (x *txn) signInFailures(user string) (token.Failures, error) {
	var f token.Failures
	return f, ignoreNotFound(x.getJSON(prefixSignInFail+user, &f))
}

func (e *enrollTx) BackupCodes() ([]token.BackupCode, error) { return e.backupCodes(e.u.Name) }

func (e *enrollTx) UseBackupCode(c token.BackupCode) error {
	return e.Delete(prefixRec + syncframe.BackupKey(e.u.Name, c.ID))
}

func (e *enrollTx) ReplaceBackupCodes(recs []token.BackupCode) error {
	_, err := e.replaceCodes(e.u, func(c token.BackupCode) bool { return c.Expires.IsZero() || c.Expired(e.now) }, recs)
	return err
}

func (e *enrollTx) Bootstrap() (token.BackupCode, bool, error) { return e.bootstrap(e.u.Name) }

func (e *enrollTx) PutBootstrap(c token.BackupCode) error { return e.putBootstrap(e.u.Name, c) }
func (e *enrollTx) UseBootstrap() error                   { return e.Delete(prefixBoot + e.u.Name) }
func (e *enrollTx) Mail() string                          { return e.u.Mail }

func (e *enrollTx) Enrolled() (bool, error) { return e.enrolled(e.u.Name) }

func (e *enrollTx) Audit(action, target, detail string) error {
	return e.txn.audit(e.now, e.actor, action, target, detail)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	return err
}

// sweepPending removes every expired pending token (of user, or of all with ""), in one
// revision if any expired. It returns how many.
func (s *Server) sweepPending(ctx context.Context, user string) (int, error) {
	now := s.now()
	prefix := prefixPending
	if user != "" {
		prefix += user + "/"
	}
	var expired []string
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		return tx.Range(prefix, func(kvp kv.KeyValue) error {
			var p pendingRecord
			if err := json.Unmarshal(kvp.Value, &p); err == nil && enroll.Expired(p.Expires, now) {
				expired = append(expired, kvp.Key)
			}
			return nil
		})
	})
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	n := 0
	_, err = s.store.Update(ctx, func(t kv.Txn) error {
		n = 0
		x := &txn{Txn: t, s: s}
		for _, k := range expired {
			if _, err := x.Get(k); err != nil {
				continue // finished or removed meanwhile
			}
			if err := x.Delete(k); err != nil {
				return err
			}
			if err := x.audit(now, "registry", "enroll.expired", "token/"+strings.TrimPrefix(k, prefixPending), ""); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if n > 0 && err == nil {
		s.log.Info("expired pending tokens removed", "count", n)
	}
	return n, err
}

// dropEnrollState removes a user's pending tokens, proof steps, portal sessions, failures (of proofs and of
// sign-ins) and bootstrap code
// (admin reset and delete; deleteRecords removes the enrolled mark with the records).
func (x *txn) dropEnrollState(user string) error {
	var keys []string
	for _, p := range []string{prefixPending + user + "/", prefixStep + user + "/"} {
		if err := x.Range(p, func(kvp kv.KeyValue) error {
			keys = append(keys, kvp.Key)
			return nil
		}); err != nil {
			return err
		}
	}
	keys = append(keys, prefixFail+user, prefixSignInFail+user, prefixBoot+user)
	for _, k := range keys {
		if err := ignoreNotFound(x.Delete(k)); err != nil {
			return err
		}
	}
	return x.dropSessions(user)
}

// enrollBegin answers POST /v1/enroll/begin: a pending token with a fresh secret.
func (s *Server) enrollBegin(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[beginRequest](body)
	if err != nil {
		return 0, nil, err
	}
	ans, err := s.service(n).Begin(r.Context(), q.User, q.Name, q.Proof)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ans, nil
}

// enrollFinish answers POST /v1/enroll/finish: a verified code makes the pending token active.
func (s *Server) enrollFinish(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[finishRequest](body)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.service(n).Finish(r.Context(), q.User, q.ID, q.Code)
	if err != nil {
		return 0, nil, err
	}
	s.noticeFinished(r.Context(), q.User, f, "node "+n.Name)
	return http.StatusOK, f.FinishResult, nil
}

// The notices of the user's own changes, for every way of making them (the nodes' /v1/enroll
// endpoints, the web portal); by says which.

// noticeFinished mails user when f activated a token.
func (s *Server) noticeFinished(ctx context.Context, user string, f enroll.Finished, by string) {
	if f.Token.ID == "" {
		return
	}
	what := fmt.Sprintf("A new token %q (id %s) was added to your account and is now active.", f.Token.Name, f.Token.ID)
	if f.BackupCodes != nil {
		what += "\nA new set of backup codes was created with it."
	}
	s.notify(ctx, user, "new token added", what, by)
}

func (s *Server) noticeRenamed(ctx context.Context, user, id, old, name, by string) {
	s.notify(ctx, user, "token renamed", fmt.Sprintf("Your token %q (id %s) was renamed to %q.", old, id, name), by)
}

// noticeRemoved mails user when rm removed a token that could log in.
func (s *Server) noticeRemoved(ctx context.Context, user, id string, rm enroll.Removed, by string) {
	if !rm.Pending {
		s.notify(ctx, user, "token removed", fmt.Sprintf("Your token %q (id %s) was removed; its codes no longer work.", rm.Name, id), by)
	}
}

func (s *Server) noticeBackupCodes(ctx context.Context, user, by string) {
	s.notify(ctx, user, "new backup codes", "A new set of backup codes was created for your account; the previous ones no longer work.", by)
}

// enrollRename answers POST /v1/enroll/rename.
func (s *Server) enrollRename(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[renameRequest](body)
	if err != nil {
		return 0, nil, err
	}
	old, err := s.service(n).Rename(r.Context(), q.User, q.ID, q.Name)
	if err != nil {
		return 0, nil, err
	}
	s.noticeRenamed(r.Context(), q.User, q.ID, old, q.Name, "node "+n.Name)
	return http.StatusOK, map[string]string{"id": q.ID, "name": q.Name}, nil
}

// enrollRemove answers POST /v1/enroll/remove: an active token needs a proof; a pending one not.
func (s *Server) enrollRemove(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[removeRequest](body)
	if err != nil {
		return 0, nil, err
	}
	rm, err := s.service(n).Remove(r.Context(), q.User, q.ID, q.Proof)
	if err != nil {
		return 0, nil, err
	}
	s.noticeRemoved(r.Context(), q.User, q.ID, rm, "node "+n.Name)
	return http.StatusOK, map[string]string{"id": q.ID, "removed": "true"}, nil
}

// enrollBackupCodes answers POST /v1/enroll/backup-codes: a new set, shown once.
func (s *Server) enrollBackupCodes(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[proofRequest](body)
	if err != nil {
		return 0, nil, err
	}
	plain, err := s.service(n).BackupCodes(r.Context(), q.User, q.Proof)
	if err != nil {
		return 0, nil, err
	}
	s.noticeBackupCodes(r.Context(), q.User, "node "+n.Name)
	return http.StatusOK, registryapi.BackupCodes{Codes: plain}, nil
}

// enrollBootstrap answers POST /v1/enroll/bootstrap: with bootstrap = "mail", mails a one-time
// code (stored hashed) that a first token's begin needs.
func (s *Server) enrollBootstrap(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[bootstrapRequest](body)
	if err != nil {
		return 0, nil, err
	}
	code, to, expires, err := s.service(n).Bootstrap(r.Context(), q.User)
	if err != nil {
		return 0, nil, err
	}
	// The one mail that carries a code: the bootstrap code itself, valid 30 minutes, once.
	s.enroll.mail.Send(mail.Message{To: to, Subject: "[" + s.cfg.Issuer + "] your enrollment code",
		Body: fmt.Sprintf("Hello %s,\n\nyour one-time code to enroll a first token is:\n\n    %s\n\n"+
			"It works once, until %s. It was requested from node %s.\n\nIf this was not you, contact %s.\n",
			q.User, code, expires.Format("2006-01-02 15:04 MST"), n.Name, s.cfg.Mail.Contact)})
	return http.StatusOK, registryapi.BootstrapSent{Sent: true, Expires: expires}, nil
}

// notify mails user a notice of a change; by is "node NAME" or "administrator NAME". It reads
// the user's address itself and never fails the caller: problems are logged.
func (s *Server) notify(ctx context.Context, user, subject, what, by string) {
	var u User
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		var err error
		u, err = (&txn{Txn: tx, s: s}).getUser(user)
		return err
	})
	if err != nil {
		s.log.Warn("mail notice not sent: cannot read user", "user", user, "subject", subject, "err", err)
		return
	}
	s.notifyUser(u, subject, what, by)
}

// notifyUser is notify for a user already read.
func (s *Server) notifyUser(u User, subject, what, by string) {
	if u.Mail == "" {
		s.log.Info("mail notice not sent: user has no mail address", "user", u.Name, "subject", subject)
		return
	}
	body := fmt.Sprintf("Hello %s,\n\na change was made to the second factor (TOTP) of your account %q:\n\n%s\n\n"+
		"When: %s\nBy:   %s\n\nIf this was not you, contact %s at once.\n",
		u.Name, u.Name, what, s.now().UTC().Format("2006-01-02 15:04:05 UTC"), by, s.cfg.Mail.Contact)
	s.enroll.mail.Send(mail.Message{To: u.Mail, Subject: "[" + s.cfg.Issuer + "] " + subject, Body: body})
}
