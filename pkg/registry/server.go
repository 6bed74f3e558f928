package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// Sentinel errors: the causes with which streams end.
var (
	// errNodeRemoved ends the streams of a node that was removed.
	errNodeRemoved = errors.New("node removed")
	// errShuttingDown ends every stream when the server stops.
	errShuttingDown = errors.New("shutting down")
)

// Options are what a Server is built from.
type Options struct {
	Config Config
	Store  kv.Store
	Sealer Sealer
	// Admins are the accepted admin tokens (a token without a Role is full).
	Admins []AdminToken
	Logger *slog.Logger
	// Now and Rand default to the real clock (clock.Now) and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
	// Notifier takes mail notices; nil builds a mail.Sender from Config.Mail.
	Notifier Notifier
	// OIDCClient talks to the portal's OpenID Connect provider; nil is a client with a timeout.
	OIDCClient *http.Client
}

// Server serves the sync and admin endpoints.
type Server struct {
	cfg    Config
	store  kv.Store
	sealer Sealer
	admins admins
	log    *slog.Logger
	now    func() time.Time
	rand   io.Reader

	idx      *index
	epoch    string // the store's (epoch.go)
	snapSem  chan struct{}
	cancel   context.CancelFunc
	tailDone chan struct{}

	mu       sync.Mutex
	streams  map[string]map[*stream]struct{} // open watch streams by node
	acks     map[string]ack                  // last ack by node
	share    *ackShare                       // acks published for the other replicas; nil on bbolt (ackshare.go)
	stopping bool

	enroll *enrollState // enroll.go
	portal http.Handler // portal.go; nil when [portal] is off

	metrics *metrics // metrics.go
}

// stream is one open watch or long poll.
type stream struct{ cancel context.CancelCauseFunc }

// New builds the index from the store and starts following it. Call Shutdown when done.
func New(ctx context.Context, o Options) (*Server, error) {
	s := &Server{cfg: o.Config, store: o.Store, sealer: o.Sealer, log: o.Logger,
		now: o.Now, rand: o.Rand, streams: map[string]map[*stream]struct{}{}, acks: map[string]ack{},
		snapSem: make(chan struct{}, max(1, o.Config.SnapshotConcurrency)), tailDone: make(chan struct{})}
	if sharesAcks(o.Store) {
		s.share = &ackShare{pending: map[string]int64{}, published: map[string]int64{}, done: make(chan struct{})}
	}
	s.admins.set(o.Admins)
	s.metrics = newMetrics()
	s.store = timedStore{Store: o.Store, m: s.metrics}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = clock.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if legacy, err := legacyStore(ctx, s.store); err != nil {
		return nil, fmt.Errorf("read the audit chain: %w", err)
	} else if legacy {
		return nil, errLegacyStore
	}
	epoch, created, err := ensureEpoch(ctx, s.store, s.rand)
	if err != nil {
		return nil, err
	}
	s.epoch = epoch
	s.log.Info("store epoch", "epoch", epoch, "created", created)
	start := time.Now()
	rev, digests, err := s.buildIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("build scope index: %w", err)
	}
	s.idx = newIndex(rev, digests)
	if err := s.readAnchor(ctx); err != nil {
		return nil, fmt.Errorf("read the audit head: %w", err)
	}
	if err := s.initEnroll(o); err != nil {
		return nil, err
	}
	if err := s.initPortal(o); err != nil {
		return nil, err
	}
	var n int64
	for _, d := range digests {
		n += d.Count()
	}
	s.log.Info("scope index built", "revision", rev, "scopes", len(digests), "visible_records", n, "took", time.Since(start).Round(time.Millisecond))
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.tail(tctx)
	go s.sweepLoop(tctx)
	if s.share != nil {
		go s.shareAcksLoop(tctx)
	}
	return s, nil
}

// Shutdown ends every open stream with an error frame shutting_down and stops following the
// store. It does not close the store. Use it before http.Server.Shutdown, which waits for
// handlers.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.stopping = true
	for _, m := range s.streams {
		for st := range m {
			st.cancel(errShuttingDown)
		}
	}
	s.mu.Unlock()
	s.cancel()
	<-s.tailDone
	if s.share != nil {
		<-s.share.done
	}
	s.stopEnroll()
}

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/sync/snapshot", s.handleSnapshot)
	mux.HandleFunc("GET /v1/sync/watch", s.handleWatch)
	mux.HandleFunc("POST /v1/sync/ack", s.handleAck)
	mux.HandleFunc("POST /v1/sync/used", s.handleUsed)
	mux.HandleFunc("POST "+registryapi.PathSyncLogins, s.handleLogins)
	s.adminRoutes(mux)
	s.enrollRoutes(mux)
	s.portalRoutes(mux)
	return s.metrics.counted(mux)
}

// newHTTPServer is the registry's http.Server with the limits of c (tc nil: plain HTTP). The
// sync handlers set their own write deadlines (a snapshot's, each flushed watch batch's), so
// write_timeout does not cut a node's long-lived stream.
func newHTTPServer(c HTTPConfig, h http.Handler, tc *tls.Config, log *slog.Logger) *http.Server {
	hs := &http.Server{Handler: h, TLSConfig: tc, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	applyLimits(hs, c)
	return hs
}

func applyLimits(hs *http.Server, c HTTPConfig) {
	hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout = c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout
	hs.IdleTimeout, hs.MaxHeaderBytes = c.IdleTimeout, c.MaxHeaderBytes
}

// registerStream adds a stream of node; it fails when the server is stopping.
func (s *Server) registerStream(node string, st *stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	m := s.streams[node]
	if m == nil {
		m = map[*stream]struct{}{}
		s.streams[node] = m
	}
	m[st] = struct{}{}
	return true
}

func (s *Server) unregisterStream(node string, st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams[node], st)
	if len(s.streams[node]) == 0 {
		delete(s.streams, node)
	}
}

// closeStreams ends a node's open streams with cause; it returns how many there were.
func (s *Server) closeStreams(node string, cause error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for st := range s.streams[node] {
		st.cancel(cause)
		n++
	}
	if cause == errNodeRemoved {
		delete(s.acks, node)
	}
	return n
}

// newCredential makes a node credential "ptn1.NODE.SECRET" and the hex SHA-256 of SECRET.
func (s *Server) newCredential(node string) (cred, hash string, err error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", "", fmt.Errorf("random credential: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	return credentialTag + "." + node + "." + secret, hex.EncodeToString(sum[:]), nil
}

// authNode authenticates a node request: a verified client certificate whose CN is a registered
// node (with client_ca), or a bearer credential. ok false means a 401 was written.
func (s *Server) authNode(w http.ResponseWriter, r *http.Request) (nodeRecord, bool) {
	var n nodeRecord
	fail := func() (nodeRecord, bool) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="totp-registry"`)
		writeError(w, http.StatusUnauthorized, "authentication required: a node credential or client certificate")
		return n, false
	}
	name, secret, viaCert := "", "", false
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && s.cfg.ClientCA != "" {
		name, viaCert = r.TLS.VerifiedChains[0][0].Subject.CommonName, true
	} else {
		tok, ok := bearer(r)
		if !ok {
			return fail()
		}
		rest, ok := strings.CutPrefix(tok, credentialTag+".")
		i := strings.LastIndexByte(rest, '.')
		if !ok || i <= 0 {
			return fail()
		}
		name, secret = rest[:i], rest[i+1:]
	}
	if !validNodeName(name) {
		return fail()
	}
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		var err error
		n, err = s.getNode(tx, name)
		return err
	})
	if err != nil {
		if !errors.Is(err, kv.ErrNotFound) && !errors.Is(err, errBadRecord) {
			// The store did not answer: that says nothing about the credential, so the node
			// must not take it for a refusal.
			s.storeFailed(w, "node authentication", err, "node", name)
			return n, false
		}
		return fail()
	}
	if !viaCert {
		sum := sha256.Sum256([]byte(secret))
		want, err := hex.DecodeString(n.Hash)
		if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return fail()
		}
	}
	return n, true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != "" && len(t) <= 1024
}

// Errors meant for the API client (the admin, or the user behind a node) are *refusal.Error;
// writeRefusal answers them with the status of their kind. Any other error is internal: logged,
// and answered 500 "internal error".

func badRequest(format string, args ...any) error {
	return refusal.New(refusal.Invalid, format, args...)
}
func notFound(format string, args ...any) error {
	return refusal.New(refusal.NotFound, format, args...)
}
func conflict(format string, args ...any) error {
	return refusal.New(refusal.Conflict, format, args...)
}

// writeRefusal answers r: its status, Retry-After when set, and its sentence. It returns the
// status.
func writeRefusal(w http.ResponseWriter, r *refusal.Error) int {
	status := r.Kind.HTTPStatus()
	if r.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(r.RetryAfter.Seconds()+0.999)))
	}
	writeError(w, status, r.Message)
	return status
}

// storeFailed answers a request that failed for another reason than a refusal, and returns the
// status: 503 with a reason and Retry-After when the store could not serve it (kv.ErrUnavailable:
// etcd unreachable or without quorum; kv.ErrConflict: concurrent writers outlasted the retries),
// so a client knows to try again and nothing waits; 500 otherwise. what names the request in the
// log line, which carries the error; the answer carries none of it.
func (s *Server) storeFailed(w http.ResponseWriter, what string, err error, attrs ...any) int {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, kv.ErrUnavailable):
		status, msg = http.StatusServiceUnavailable, "the registry's store does not answer (etcd unreachable or without quorum); try again shortly"
	case errors.Is(err, kv.ErrConflict):
		status, msg = http.StatusServiceUnavailable, "the registry is busy with concurrent changes to the same data; try again"
	}
	s.log.Error(what+" failed", append(attrs, "status", status, "err", err)...)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeError(w, status, msg)
	return status
}

// isNotFound says whether err is a NotFound refusal.
func isNotFound(err error) bool {
	r, ok := refusal.As(err)
	return ok && r.Kind == refusal.NotFound
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, registryapi.ErrorAnswer{Error: msg})
}

// handleStatus answers GET /v1/status (no authentication).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, registryapi.Status{Revision: s.store.Rev(), Compacted: s.store.CompactedRev(),
		Version: versionString()})
}

// scopeOf checks ?scope= against the node's scope: 403 for another.
func scopeOf(w http.ResponseWriter, r *http.Request, n nodeRecord) (string, bool) {
	if q := r.URL.Query().Get("scope"); q != "" && q != n.Scope {
		writeError(w, http.StatusForbidden, "this node's credential is for scope "+n.Scope)
		return "", false
	}
	return n.Scope, true
}

// emptyDigest is the digest of an empty set.
var emptyDigest = (&syncframe.Digest{}).String()
