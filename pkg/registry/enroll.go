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

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
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
//	enroll/step/USER/ID     the last time step of token ID accepted as a proof or finishing code
//	enroll/fail/USER        failed proofs in a row, and the end of a lockout
//	enroll/boot/USER        a bootstrap code: salted hash (package backupcode), expiry
const (
	prefixEnroll    = "enroll/"
	prefixPending   = "enroll/pending/"
	prefixStep      = "enroll/step/"
	prefixFail      = "enroll/fail/"
	prefixBoot      = "enroll/boot/"
	pendingTTL      = 10 * time.Minute
	bootstrapTTL    = 30 * time.Minute
	bootstrapEvery  = time.Minute // at most one bootstrap mail per user per minute
	sweepInterval   = time.Minute
	proofWindow     = 1  // steps either side, as at login
	skewHint        = 10 // steps: a finishing code this far off answers clock_skew
	maxEnrollBody   = 4 << 10
	maxAnswerLength = 64
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
	// Proof is proofCode when begin checked a code of an active token or a backup code; a first
	// token's enrollment ("" or a bootstrap code) may finish only while the user has no active
	// token, and only one of them is pending at a time.
	Proof string `json:"proof,omitempty"`
}

// proofCode marks a pending token begun with a proof of possession of an existing factor.
const proofCode = "code"

type stepRecord struct {
	Step uint64 `json:"step"`
}

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

// failures reads the user's failed proofs (zero when none).
func (x *txn) failures(user string) (token.Failures, error) {
	var f token.Failures
	if err := x.getJSON(prefixFail+user, &f); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return f, err
	}
	return f, nil
}

// countFailure counts one failed proof of e.u and returns the record and the back-off it starts.
func (e *enrollTxn) countFailure() (token.Failures, time.Duration, error) {
	f, err := e.failures(e.u.Name)
	if err != nil {
		return f, 0, err
	}
	f, d := f.Fail(e.now, e.s.cfg.Enroll.proofLimits())
	return f, d, e.putJSON(prefixFail+e.u.Name, f)
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

// Refusals a user sees (through the node's CLI).
var (
	errProofRequired = forbidden("a proof is required: a current code of one of your tokens, or a backup code")
	errBootRequired  = forbidden("a bootstrap code is required for a first token: request one by mail first")
	errNotInScope    = forbidden("this user is not known in this node's scope")
)

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
				status = http.StatusInternalServerError
				s.log.Error("enroll request failed", "node", n.Name, "path", r.URL.Path, "err", err)
				writeError(w, status, "internal error")
			}
			return
		}
		writeJSON(w, status, v)
	})
}

// enrollTxn is one enrollment change: the transaction, the user (in the node's scope), the
// node acting and the time.
type enrollTxn struct {
	*txn
	u    User
	node nodeRecord
	now  time.Time
	// refused is a refusal to answer after committing (a failed proof is recorded, not rolled
	// back).
	refused error
}

func (e *enrollTxn) actor() string { return "node:" + e.node.Name }

func (e *enrollTxn) audit(action, target, reason string) error {
	return e.txn.audit(e.now, e.actor(), action, target, reason)
}

// enrollChange runs fn in one kv.Update for user, after checking that the user is in the node's
// scope (an unknown user gets the same 403). It returns e.refused, if set, after the commit.
func (s *Server) enrollChange(ctx context.Context, n nodeRecord, user string, fn func(e *enrollTxn) error) (int64, error) {
	var refused error
	rev, err := s.store.Update(ctx, func(t kv.Txn) error {
		x := &txn{Txn: t, s: s}
		u, err := x.user(user)
		if err != nil {
			if isNotFound(err) {
				return errNotInScope
			}
			return err
		}
		if !visible(u.Scopes, n.Scope) {
			return errNotInScope
		}
		e := &enrollTxn{txn: x, u: u, node: n, now: s.now()}
		if err := fn(e); err != nil {
			return err
		}
		refused = e.refused
		return nil
	})
	if err != nil {
		return 0, err
	}
	return rev, refused
}

// sealPending writes a pending token.
func (e *enrollTxn) putPending(t token.Token, expires time.Time, proof string) error {
	key := prefixPending + t.User + "/" + t.ID
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	sealed, err := e.s.sealer.Seal(v, []byte(key))
	if err != nil {
		return fmt.Errorf("seal %s: %w", key, err)
	}
	return e.putJSON(key, pendingRecord{Expires: expires.UTC(), Node: e.node.Name, Sealed: sealed, Proof: proof})
}

// firstPending returns the ids of the user's pending tokens begun without a proof (first tokens).
// pend is e.pendingIDs.
func (e *enrollTxn) firstPending(pend map[string]time.Time) ([]string, error) {
	var ids []string
	for id := range pend {
		_, p, err := e.pending(e.u.Name, id)
		if err != nil {
			return nil, err
		}
		if p.Proof != proofCode {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// pending returns one pending token, or kv.ErrNotFound.
func (x *txn) pending(user, id string) (token.Token, pendingRecord, error) {
	var t token.Token
	var p pendingRecord
	key := prefixPending + user + "/" + id
	if err := x.getJSON(key, &p); err != nil {
		return t, p, err
	}
	v, err := x.s.sealer.Open(p.Sealed, []byte(key))
	if err != nil {
		return t, p, fmt.Errorf("open %s: %w", key, err)
	}
	return t, p, json.Unmarshal(v, &t)
}

// pendingIDs returns the ids of a user's pending tokens and their expiry.
func (x *txn) pendingIDs(user string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := x.Range(prefixPending+user+"/", func(kvp kv.KeyValue) error {
		var p pendingRecord
		if err := json.Unmarshal(kvp.Value, &p); err != nil {
			return fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		out[kvp.Key[len(prefixPending)+len(user)+1:]] = p.Expires
		return nil
	})
	return out, err
}

// sweepUser removes the user's expired pending tokens (lazy expiry), with an audit record each.
func (e *enrollTxn) sweepUser() error {
	ids, err := e.pendingIDs(e.u.Name)
	if err != nil {
		return err
	}
	for id, exp := range ids {
		if !e.now.Before(exp) {
			if err := e.Delete(prefixPending + e.u.Name + "/" + id); err != nil {
				return err
			}
			if err := e.txn.audit(e.now, "registry", "enroll.expired", "token/"+e.u.Name+"/"+id, ""); err != nil {
				return err
			}
		}
	}
	return nil
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
			if err := json.Unmarshal(kvp.Value, &p); err == nil && !now.Before(p.Expires) {
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

// dropEnrollState removes a user's pending tokens, proof steps, failures and bootstrap code
// (admin reset and delete).
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
	keys = append(keys, prefixFail+user, prefixBoot+user)
	for _, k := range keys {
		if err := x.Delete(k); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
	}
	return nil
}

func (x *txn) lastStep(user, id string) uint64 {
	var r stepRecord
	_ = x.getJSON(prefixStep+user+"/"+id, &r)
	return r.Step
}

func (x *txn) setStep(user, id string, step uint64) error {
	return x.putJSON(prefixStep+user+"/"+id, stepRecord{Step: step})
}

// proofKinds says what a proof may be.
type proofKinds struct {
	codes     bool // a current code of an active token, or a backup code or passcode
	bootstrap bool // a bootstrap code
}

// checkProof checks proof for e.u. On success it records what the proof used up (the step of
// the code, the backup code deleted, the bootstrap code deleted) and clears the failures; on a
// wrong proof it counts and audits the failure and sets e.refused. A lockout or a missing
// proof is returned as an error (nothing written).
func (e *enrollTxn) checkProof(proof string, kinds proofKinds, action string) (ok bool, err error) {
	user := e.u.Name
	f, err := e.failures(user)
	if err != nil {
		return false, err
	}
	switch forGood, wait := f.Locked(e.now, e.s.cfg.Enroll.proofLimits()); {
	case forGood:
		return false, &refusal.Error{Kind: refusal.TooMany,
			Message: fmt.Sprintf("%d failed proofs in a row: your self-service changes are locked; ask your administrators to unlock you", f.Count)}
	case wait > 0:
		return false, &refusal.Error{Kind: refusal.TooMany, RetryAfter: wait,
			Message: fmt.Sprintf("too many failed proofs; try again in %d minutes", int(wait.Minutes())+1)}
	}
	if strings.TrimSpace(proof) == "" {
		if kinds.codes {
			return false, errProofRequired
		}
		return false, errBootRequired
	}
	replayed := false
	if kinds.codes {
		toks, err := e.tokens(user)
		if err != nil {
			return false, err
		}
		i, m := token.MatchAny(toks, token.Codes(toks, proof, false), e.now, proofWindow, 0, func(id string) uint64 {
			return e.lastStep(user, id)
		})
		switch m.Status {
		case token.OK:
			t := &toks[i]
			if err := e.setStep(user, t.ID, m.Step); err != nil {
				return false, err
			}
			// Nodes learn the step with the record, so the proof cannot log in there too.
			t.UsedStep = max(t.UsedStep, m.Step)
			if err := e.putToken(e.u, *t); err != nil {
				return false, err
			}
			return true, e.proofOK(action, "code of token "+t.ID)
		case token.Replay:
			replayed = true
		}
		if norm, ok := backupcode.Normalize(proof); ok {
			codes, err := e.backupCodes(user)
			if err != nil {
				return false, err
			}
			for _, c := range codes {
				if c.Expired(e.now) || !backupcode.Match(norm, c) {
					continue
				}
				if err := e.Delete(prefixRec + syncframe.BackupKey(user, c.ID)); err != nil {
					return false, err
				}
				what := "backup_code_used"
				if !c.Expires.IsZero() {
					what = "passcode_used"
				}
				if err := e.audit(what, "user/"+user, "id "+c.ID+" as proof for "+action); err != nil {
					return false, err
				}
				return true, e.proofOK(action, "backup code "+c.ID)
			}
		}
	}
	if kinds.bootstrap {
		var c token.BackupCode
		err := e.getJSON(prefixBoot+user, &c)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return false, err
		}
		if norm, ok := backupcode.Normalize(proof); ok && err == nil && !c.Expired(e.now) && backupcode.Match(norm, c) {
			if err := e.Delete(prefixBoot + user); err != nil {
				return false, err
			}
			return true, e.proofOK(action, "bootstrap code")
		}
	}
	// A failure: counted (until a success or an administrator clears it) and audited.
	reason := "wrong proof"
	if replayed {
		reason = "replayed code"
	}
	e.refused = forbidden("the proof was not accepted: use a current code of one of your tokens, or an unused backup code")
	if replayed {
		e.refused = forbidden("this code was already used; wait for the next one")
	}
	f, wait, err := e.countFailure()
	if err != nil {
		return false, err
	}
	switch {
	case f.Count >= e.s.cfg.Enroll.MaxFailures:
		reason += fmt.Sprintf("; %d failures: proofs locked until an administrator unlocks the user", f.Count)
	case wait > 0:
		reason += fmt.Sprintf("; %d failures: proofs refused until %s", f.Count, f.Until.UTC().Format(time.RFC3339))
	}
	e.s.log.Warn("enroll proof refused", "user", user, "node", e.node.Name, "action", action, "reason", reason)
	return false, e.audit("enroll.proof_failed", "user/"+user, action+": "+reason)
}

// proofOK clears the failures after an accepted proof.
func (e *enrollTxn) proofOK(action, what string) error {
	if err := e.Delete(prefixFail + e.u.Name); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	e.s.log.Info("enroll proof accepted", "user", e.u.Name, "node", e.node.Name, "action", action, "proof", what)
	return nil
}

// enrollBegin answers POST /v1/enroll/begin: a pending token with a fresh secret.
func (s *Server) enrollBegin(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[beginRequest](body)
	if err != nil {
		return 0, nil, err
	}
	secret, err := totp.NewSecret(s.rand, totp.DefaultSecretLen)
	if err != nil {
		return 0, nil, err
	}
	var ans registryapi.Enrollment
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		if err := e.sweepUser(); err != nil {
			return err
		}
		toks, err := e.tokens(q.User)
		if err != nil {
			return err
		}
		pend, err := e.pendingIDs(q.User)
		if err != nil {
			return err
		}
		active, disabled, counted := 0, 0, len(pend)
		all := toks
		for _, t := range toks {
			switch t.State {
			case token.Active:
				active++
			case token.Disabled:
				disabled++
			}
			if t.State != token.Disabled {
				counted++
			}
		}
		if active == 0 && disabled > 0 && s.cfg.Enroll.Bootstrap != BootstrapMail {
			// An administrator disabled the user's tokens: a new "first" token without a proof
			// would undo that. A mailed bootstrap code (where the site uses them) or a reset does.
			return conflict("your token is disabled; ask your administrators to enable it or to reset your second factor")
		}
		for id := range pend {
			all = append(all, token.Token{ID: id})
		}
		var replaced []string // one pending first token at a time: a new first enrollment replaces the others
		if active == 0 {
			if replaced, err = e.firstPending(pend); err != nil {
				return err
			}
			counted -= len(replaced)
		}
		if counted >= s.cfg.Enroll.MaxTokens {
			return conflict("you have %d tokens (active or pending), the most this site allows; remove one first", counted)
		}
		kinds, proof := proofKinds{codes: true}, proofCode
		if active == 0 {
			kinds, proof = proofKinds{bootstrap: s.cfg.Enroll.Bootstrap == BootstrapMail}, ""
		}
		if kinds.codes || kinds.bootstrap {
			if ok, err := e.checkProof(q.Proof, kinds, "enroll.begin"); !ok || err != nil {
				return err
			}
		}
		for _, id := range replaced {
			if err := e.Delete(prefixPending + q.User + "/" + id); err != nil {
				return err
			}
			if err := e.audit("enroll.cancel", "token/"+q.User+"/"+id, "replaced by a new first enrollment"); err != nil {
				return err
			}
		}
		id, err := s.newTokenID(all)
		if err != nil {
			return err
		}
		t := token.Token{User: q.User, ID: id, Name: q.Name, Algorithm: totp.DefaultParams.Algorithm,
			Digits: totp.DefaultParams.Digits, Period: totp.DefaultParams.Period, Secret: secret,
			State: token.Pending, Created: e.now.UTC()}
		if t.Name == "" {
			t.Name = token.DefaultName(all)
		}
		if err := t.Validate(); err != nil {
			return badRequest("%v", err)
		}
		ans = registryapi.Enrollment{ID: id, Secret: totp.EncodeSecret(secret), Expires: e.now.Add(pendingTTL).UTC()}
		k := totp.Key{Issuer: s.cfg.Issuer, Account: q.User, Secret: secret, Params: t.Params()}
		if err := k.Validate(); err != nil {
			return badRequest("cannot make an otpauth URI for user %q: %v", clip(q.User), err)
		}
		ans.URI = k.URI()
		if err := e.putPending(t, ans.Expires, proof); err != nil {
			return err
		}
		return e.audit("enroll.begin", "token/"+q.User+"/"+id, "name "+t.Name)
	})
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
	var ans registryapi.FinishResult
	var tok token.Token
	var plain []string
	var recs []token.BackupCode
	now := s.now()
	plain, recs, err = backupcode.New(s.rand, q.User, backupcode.Count, now)
	if err != nil {
		return 0, nil, err
	}
	key := prefixPending + q.User + "/" + q.ID
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		ans = registryapi.FinishResult{}
		t, p, err := e.pending(q.User, q.ID)
		if errors.Is(err, kv.ErrNotFound) {
			// Gone: finished already (answer as before), expired and swept, or never was.
			if _, at, err := e.token(q.User, q.ID); err == nil && at.State == token.Active {
				ans.Status = registryapi.StatusActive
				return nil
			}
			return notFound("no pending enrollment %q: it expired or was never started; begin again", clip(q.ID))
		}
		if err != nil {
			return err
		}
		if !e.now.Before(p.Expires) {
			ans.Status = registryapi.StatusExpired
			return e.sweepUser() // this one and any other expired one
		}
		code, ok := totp.ParseCode(q.Code, t.Digits)
		if !ok {
			ans.Status = registryapi.StatusWrongCode
			return nil
		}
		m := token.Match(&t, code, e.now, proofWindow, skewHint, e.lastStep(q.User, q.ID))
		step := m.Step
		switch m.Status {
		case token.Skew:
			// Refused and counted as a failed proof; the step is burned, so that the code, shown
			// before its time, never finishes the enrollment when its time comes.
			ans.Status, ans.SkewS = registryapi.StatusClockSkew, m.SkewSeconds
			if err := e.setStep(q.User, t.ID, max(e.lastStep(q.User, t.ID), step)); err != nil {
				return err
			}
			_, _, err := e.countFailure()
			return err
		case token.OK:
		default:
			ans.Status = registryapi.StatusWrongCode
			return nil
		}
		toks, err := e.tokens(q.User)
		if err != nil {
			return err
		}
		first := true
		for _, o := range toks {
			if o.State == token.Active {
				first = false
			}
		}
		if !first && p.Proof != proofCode {
			// Begun as a first token (no proof); another token is active now, so adding this one
			// would skip the proof every further token needs.
			if err := e.Delete(key); err != nil {
				return err
			}
			e.refused = conflict("another token of yours became active after this enrollment began; " +
				"begin again, with a code from that token or a backup code")
			return e.audit("enroll.cancel", "token/"+q.User+"/"+t.ID, "begun without a proof; the user has an active token now")
		}
		t.State = token.Active
		t.UsedStep = step // the finishing code does not log in afterwards, on any node
		if err := e.Delete(key); err != nil {
			return err
		}
		if err := e.putToken(e.u, t); err != nil {
			return err
		}
		if err := e.setStep(q.User, t.ID, step); err != nil {
			return err
		}
		if err := e.audit("enroll.finish", "token/"+q.User+"/"+t.ID, "name "+t.Name); err != nil {
			return err
		}
		ans.Status, tok = registryapi.StatusActive, t
		if first {
			if _, err := e.replaceCodes(e.u, func(c token.BackupCode) bool { return c.Expires.IsZero() || c.Expired(e.now) }, recs); err != nil {
				return err
			}
			ans.BackupCodes = plain
			return e.audit("backup-codes.create", "user/"+q.User, "with the first token")
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if ans.Status == registryapi.StatusActive && tok.ID != "" {
		what := fmt.Sprintf("A new token %q (id %s) was added to your account and is now active.", tok.Name, tok.ID)
		if ans.BackupCodes != nil {
			what += "\nA new set of backup codes was created with it."
		}
		s.notify(r.Context(), q.User, "new token added", what, "node "+n.Name)
	}
	return http.StatusOK, ans, nil
}

// enrollRename answers POST /v1/enroll/rename (no proof: a name changes nothing at login).
func (s *Server) enrollRename(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[renameRequest](body)
	if err != nil {
		return 0, nil, err
	}
	var old string
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		if t, p, err := e.pending(q.User, q.ID); err == nil {
			old, t.Name = t.Name, q.Name
			if err := e.putPending(t, p.Expires, p.Proof); err != nil {
				return err
			}
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		} else {
			_, t, err := e.token(q.User, q.ID)
			if err != nil {
				return err
			}
			old, t.Name = t.Name, q.Name
			if err := e.putToken(e.u, t); err != nil {
				return err
			}
		}
		return e.audit("enroll.rename", "token/"+q.User+"/"+q.ID, "from "+old+" to "+q.Name)
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), q.User, "token renamed", fmt.Sprintf("Your token %q (id %s) was renamed to %q.", old, q.ID, q.Name), "node "+n.Name)
	return http.StatusOK, map[string]string{"id": q.ID, "name": q.Name}, nil
}

// enrollRemove answers POST /v1/enroll/remove: an active token needs a proof; a pending one not.
func (s *Server) enrollRemove(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[removeRequest](body)
	if err != nil {
		return 0, nil, err
	}
	var name string
	var wasPending bool
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		wasPending = false
		if t, _, err := e.pending(q.User, q.ID); err == nil {
			name, wasPending = t.Name, true
			if err := e.Delete(prefixPending + q.User + "/" + q.ID); err != nil {
				return err
			}
			return e.audit("enroll.cancel", "token/"+q.User+"/"+q.ID, "")
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		_, t, err := e.token(q.User, q.ID)
		if err != nil {
			return err
		}
		if ok, err := e.checkProof(q.Proof, proofKinds{codes: true}, "enroll.remove"); !ok || err != nil {
			return err
		}
		name = t.Name
		if err := e.Delete(prefixRec + syncframe.TokenKey(q.User, q.ID)); err != nil {
			return err
		}
		if err := e.Delete(prefixStep + q.User + "/" + q.ID); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return e.audit("token.delete", "token/"+q.User+"/"+q.ID, "by the user")
	})
	if err != nil {
		return 0, nil, err
	}
	if !wasPending {
		s.notify(r.Context(), q.User, "token removed", fmt.Sprintf("Your token %q (id %s) was removed; its codes no longer work.", name, q.ID), "node "+n.Name)
	}
	return http.StatusOK, map[string]string{"id": q.ID, "removed": "true"}, nil
}

// enrollBackupCodes answers POST /v1/enroll/backup-codes: a new set, shown once.
func (s *Server) enrollBackupCodes(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[proofRequest](body)
	if err != nil {
		return 0, nil, err
	}
	now := s.now()
	plain, recs, err := backupcode.New(s.rand, q.User, backupcode.Count, now)
	if err != nil {
		return 0, nil, err
	}
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		if ok, err := e.checkProof(q.Proof, proofKinds{codes: true}, "backup-codes"); !ok || err != nil {
			return err
		}
		if _, err := e.replaceCodes(e.u, func(c token.BackupCode) bool { return c.Expires.IsZero() || c.Expired(e.now) }, recs); err != nil {
			return err
		}
		return e.audit("backup-codes.create", "user/"+q.User, "by the user")
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), q.User, "new backup codes", "A new set of backup codes was created for your account; the previous ones no longer work.", "node "+n.Name)
	return http.StatusOK, registryapi.BackupCodes{Codes: plain}, nil
}

// enrollBootstrap answers POST /v1/enroll/bootstrap: with bootstrap = "mail", mails a one-time
// code (stored hashed, 30 minutes) that a first token's begin needs.
func (s *Server) enrollBootstrap(r *http.Request, n nodeRecord, body []byte) (int, any, error) {
	q, err := parseEnroll[bootstrapRequest](body)
	if err != nil {
		return 0, nil, err
	}
	if s.cfg.Enroll.Bootstrap != BootstrapMail {
		return 0, nil, conflict("this site does not use bootstrap codes: a first token needs no proof")
	}
	now := s.now()
	plain, recs, err := backupcode.New(s.rand, q.User, 1, now)
	if err != nil {
		return 0, nil, err
	}
	recs[0].Expires = now.Add(bootstrapTTL).UTC()
	var to string
	_, err = s.enrollChange(r.Context(), n, q.User, func(e *enrollTxn) error {
		if e.u.Mail == "" {
			return conflict("there is no mail address on record for you; ask the helpdesk to enroll you")
		}
		toks, err := e.tokens(q.User)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if t.State == token.Active {
				return conflict("you already have a token: adding another needs a code from it or a backup code")
			}
		}
		var old token.BackupCode
		if err := e.getJSON(prefixBoot+q.User, &old); err == nil && e.now.Sub(old.Created) < bootstrapEvery {
			return &refusal.Error{Kind: refusal.TooMany, RetryAfter: bootstrapEvery - e.now.Sub(old.Created),
				Message: "a bootstrap code was mailed less than a minute ago; check your mail"}
		}
		to = e.u.Mail
		if err := e.putJSON(prefixBoot+q.User, recs[0]); err != nil {
			return err
		}
		return e.audit("enroll.bootstrap", "user/"+q.User, "code mailed")
	})
	if err != nil {
		return 0, nil, err
	}
	// The one mail that carries a code: the bootstrap code itself, valid 30 minutes, once.
	s.enroll.mail.Send(mail.Message{To: to, Subject: "[" + s.cfg.Issuer + "] your enrollment code",
		Body: fmt.Sprintf("Hello %s,\n\nyour one-time code to enroll a first token is:\n\n    %s\n\n"+
			"It works once, until %s. It was requested from node %s.\n\nIf this was not you, contact %s.\n",
			q.User, plain[0], recs[0].Expires.Format("2006-01-02 15:04 MST"), n.Name, s.cfg.Mail.Contact)})
	return http.StatusOK, registryapi.BootstrapSent{Sent: true, Expires: recs[0].Expires}, nil
}

// notify mails user a notice of a change; by is "node NAME" or "administrator NAME". It reads
// the user's address itself and never fails the caller: problems are logged.
func (s *Server) notify(ctx context.Context, user, subject, what, by string) {
	var u User
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		return (&txn{Txn: tx}).getJSON(prefixUser+user, &u)
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
