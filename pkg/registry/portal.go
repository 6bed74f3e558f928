package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/portal"
	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// The web portal's side in the registry (package portal serves the pages): its Backend on the
// same enrollment rules as /v1/enroll (enroll.Service on the kv store, bound to no node scope:
// the portal serves every user the registry knows), and its sessions in the kv store:
//
//	portal/session/HEX  a session: HEX is the SHA-256 of the id in the cookie (portal.Session),
//	                    and its MAC (storedSession)
//	portal/oidc/HEX     an OpenID Connect sign-in between start and callback (oidclogin.Flow),
//	                    HEX the SHA-256 of its state
//
// so any replica serves a session and signing out ends it on all of them; the sweep removes
// expired sessions and flows every minute.
const (
	prefixSession = "portal/session/"
	prefixFlow    = "portal/oidc/"
	actorPortal   = "portal"
)

// initPortal builds the portal when [portal] enabled.
func (s *Server) initPortal(o Options) error {
	if !s.cfg.Portal.Enabled {
		return nil
	}
	p, err := portal.New(portal.Options{Config: s.cfg.Portal, Backend: &portalBackend{s: s}, Now: s.now, Rand: s.rand,
		Log: s.log.With("component", "portal"), OIDC: s.portalOIDC(o.OIDCClient)})
	if err != nil {
		return fmt.Errorf("portal: %w", err)
	}
	s.portal = p
	return nil
}

// portalOIDC is the OpenID Connect sign-in of [portal.oidc], or nil without "oidc" in sign_in.
// It asks the provider for its discovery document at the first sign-in (and again after a
// failure), so a provider that is down does not keep the registry from starting.
func (s *Server) portalOIDC(client *http.Client) portal.OIDC {
	if !s.cfg.Portal.Has(portal.SignInOIDC) {
		return nil
	}
	return &lazyOIDC{s: s, client: client}
}

// lazyOIDC is oidclogin.Login made at first need.
type lazyOIDC struct {
	s      *Server
	client *http.Client
	mu     sync.Mutex
	l      *oidclogin.Login
}

func (o *lazyOIDC) login(ctx context.Context) (*oidclogin.Login, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.l != nil {
		return o.l, nil
	}
	c := o.s.cfg.Portal
	redirect := "/portal/oidc/callback"
	if c.PublicURL != "" {
		redirect = strings.TrimRight(c.PublicURL, "/") + redirect
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := oidclogin.New(ctx, c.OIDC, oidclogin.Options{Store: &flowStore{s: o.s}, RedirectURL: redirect,
		Now: o.s.now, HTTPClient: o.client, Log: o.s.log.With("component", "portal.oidc")})
	if err != nil {
		return nil, err
	}
	o.l = l
	return l, nil
}

func (o *lazyOIDC) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	l, err := o.login(r.Context())
	if err != nil {
		return err
	}
	return l.Start(w, r, returnTo)
}

func (o *lazyOIDC) Finish(r *http.Request) (string, []string, string, error) {
	l, err := o.login(r.Context())
	if err != nil {
		o.s.log.Error("portal: OpenID Connect provider", "err", err)
		return "", nil, "", oidclogin.ErrUnavailable
	}
	id, ret, err := l.Finish(r)
	return id.User, id.Groups, ret, err
}

// flowStore keeps OpenID Connect sign-in flows in the kv store (portal/oidc/STATE), so any
// replica finishes a sign-in another started.
type flowStore struct{ s *Server }

func (f *flowStore) Put(ctx context.Context, fl oidclogin.Flow) error {
	_, err := f.s.store.Update(ctx, func(t kv.Txn) error {
		return (&txn{Txn: t, s: f.s}).putJSON(prefixFlow+hashKey(fl.State), fl)
	})
	return err
}

func (f *flowStore) Take(ctx context.Context, state string) (oidclogin.Flow, bool, error) {
	var fl oidclogin.Flow
	found := false
	_, err := f.s.store.Update(ctx, func(t kv.Txn) error {
		found = false
		key := prefixFlow + hashKey(state)
		err := (&txn{Txn: t, s: f.s}).getJSON(key, &fl)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return t.Delete(key)
	})
	return fl, found, err
}

// hashKey is the hex SHA-256 of a value the store keys by but must not hold.
func hashKey(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// portalBackend is portal.Backend on the server.
type portalBackend struct{ s *Server }

// svc is the enrollment rules for the portal: every user the registry knows.
func (b *portalBackend) svc() *enroll.Service {
	return b.s.enrollService(&enrollStore{s: b.s, node: nodeRecord{Name: actorPortal}, web: true})
}

func (b *portalBackend) Known(ctx context.Context, user string) (bool, error) {
	if token.ValidUser(user) != nil {
		return false, nil
	}
	found := false
	err := b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		_, err := (&txn{Txn: tx, s: b.s}).getUser(user)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

func (b *portalBackend) MailSignInCode(ctx context.Context, user, from string) error {
	code, to, expires, err := b.svc().SignInCode(ctx, user)
	if err != nil {
		return err
	}
	c := b.s.cfg.Portal
	contact := c.Contact
	if contact == "" {
		contact = b.s.cfg.Mail.Contact
	}
	// The one portal mail that carries a code: the sign-in code itself, valid 30 minutes, once.
	b.s.enroll.mail.Send(mail.Message{To: to, Subject: "[" + c.SiteName + "] your sign-in code",
		Body: fmt.Sprintf("Hello %s,\n\nyour one-time code to sign in to the %s token portal is:\n\n    %s\n\n"+
			"It works once, until %s. It was requested from the address %s.\n\nIf this was not you, contact %s.\n",
			user, c.SiteName, code, expires.Format("2006-01-02 15:04 MST"), from, contact)})
	return nil
}

func (b *portalBackend) SignIn(ctx context.Context, user, answer string, mailed bool) error {
	if checkAnswer("code", answer) != nil {
		return forbidden("the code was not accepted")
	}
	return b.svc().SignIn(ctx, user, answer, mailed)
}

func (b *portalBackend) Begin(ctx context.Context, user, name, proof string, identified bool) (registryapi.Enrollment, error) {
	if err := checkAnswer("proof", proof); err != nil {
		return registryapi.Enrollment{}, err
	}
	if identified {
		return b.svc().BeginSignedIn(ctx, user, name, proof)
	}
	return b.svc().Begin(ctx, user, name, proof)
}

func (b *portalBackend) Enrollment(ctx context.Context, user, id string) (registryapi.Enrollment, error) {
	if err := checkID(id); err != nil {
		return registryapi.Enrollment{}, notFound("you have no token %q", clip(id))
	}
	return b.svc().Enrollment(ctx, user, id)
}

func (b *portalBackend) Finish(ctx context.Context, user, id, code, by string) (registryapi.FinishResult, error) {
	if err := firstErr(checkID(id), checkAnswer("code", code)); err != nil {
		return registryapi.FinishResult{}, err
	}
	f, err := b.svc().Finish(ctx, user, id, code)
	if err != nil {
		return registryapi.FinishResult{}, err
	}
	b.s.noticeFinished(ctx, user, f, by)
	return f.FinishResult, nil
}

func (b *portalBackend) Rename(ctx context.Context, user, id, name, by string) error {
	if err := checkID(id); err != nil {
		return notFound("you have no token %q", clip(id))
	}
	old, err := b.svc().Rename(ctx, user, id, name)
	if err != nil {
		return err
	}
	b.s.noticeRenamed(ctx, user, id, old, name, by)
	return nil
}

func (b *portalBackend) Remove(ctx context.Context, user, id, proof, by string) error {
	if err := checkID(id); err != nil {
		return notFound("you have no token %q", clip(id))
	}
	if err := checkAnswer("proof", proof); err != nil {
		return err
	}
	rm, err := b.svc().Remove(ctx, user, id, proof)
	if err != nil {
		return err
	}
	b.s.noticeRemoved(ctx, user, id, rm, by)
	return nil
}

func (b *portalBackend) BackupCodes(ctx context.Context, user, proof, by string) ([]string, error) {
	if err := checkAnswer("proof", proof); err != nil {
		return nil, err
	}
	codes, err := b.svc().BackupCodes(ctx, user, proof)
	if err != nil {
		return nil, err
	}
	b.s.noticeBackupCodes(ctx, user, by)
	return codes, nil
}

// Tokens lists user's tokens and pending tokens, with how many of the user's login nodes
// applied each.
func (b *portalBackend) Tokens(ctx context.Context, user string) ([]portal.Token, error) {
	var out []portal.Token
	err := b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		out = nil
		x := &txn{Txn: tx, s: b.s}
		u, err := x.user(user)
		if err != nil {
			return err
		}
		toks, err := x.tokens(user)
		if err != nil {
			return err
		}
		revs, total, err := b.s.nodeRevs(x, u)
		if err != nil {
			return err
		}
		now := b.s.now()
		for _, t := range toks {
			kvp, err := x.Get(prefixRec + syncframe.TokenKey(user, t.ID))
			if err != nil {
				return err
			}
			c, err := x.claim(user, t.ID)
			if err != nil {
				return err
			}
			last := t.LastUsed
			if c.Node != "registry" && c.At.After(last) {
				last = c.At // a login's claim; the registry's are proofs
			}
			out = append(out, portal.Token{ID: t.ID, Name: t.Name, Created: t.Created, LastUsed: last,
				State: string(t.State), Active: applied(revs, kvp.ModRev), Total: total})
		}
		pend, err := (&enrollTx{txn: x, u: u}).Pending()
		if err != nil {
			return err
		}
		for _, p := range pend {
			if !enroll.Expired(p.Expires, now) { // an expired one waits for the sweep
				out = append(out, portal.Token{ID: p.Token.ID, Name: p.Token.Name, Created: p.Token.Created, State: "pending", Total: total})
			}
		}
		return nil
	})
	if isNotFound(err) {
		return nil, nil // a user deleted during the session has nothing
	}
	return out, err
}

// Nodes counts the login nodes serving user that applied token id.
func (b *portalBackend) Nodes(ctx context.Context, user, id string) (active, total int, err error) {
	var rev int64
	if checkID(id) != nil {
		return 0, 0, notFound("you have no token %q", clip(id))
	}
	err = b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		x := &txn{Txn: tx, s: b.s}
		u, err := x.user(user)
		if err != nil {
			return err
		}
		kvp, err := x.Get(prefixRec + syncframe.TokenKey(user, id))
		if errors.Is(err, kv.ErrNotFound) {
			return notFound("you have no token %q", clip(id))
		}
		if err != nil {
			return err
		}
		revs, n, err := b.s.nodeRevs(x, u)
		active, total, rev = applied(revs, kvp.ModRev), n, kvp.ModRev
		return err
	})
	if err == nil && active < total {
		b.s.askAcks(ctx, rev) // the other replicas' nodes (etcd; ackshare.go)
	}
	return active, total, err
}

// nodeRevs are the applied revisions (from their last acks to this replica or, on etcd, the
// acks other replicas published: ackshare.go; 0 before any) of the nodes whose scope serves u,
// and how many there are.
func (s *Server) nodeRevs(x *txn, u User) ([]int64, int, error) {
	var names []string
	err := x.Range(prefixNode, func(kvp kv.KeyValue) error {
		n, err := s.decodeNode(kvp.Key, kvp.Value)
		if errors.Is(err, errBadRecord) {
			return nil // refused and logged: counted nowhere
		}
		if err != nil {
			return err
		}
		if visible(u.Scopes, n.Scope) {
			names = append(names, n.Name)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	shared, err := s.sharedAcks(x) // what the other replicas' nodes acknowledged (etcd)
	if err != nil {
		return nil, 0, err
	}
	revs := make([]int64, len(names))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range names {
		revs[i] = max(s.acks[n].Rev, shared[n])
	}
	return revs, len(names), nil
}

// applied counts the revisions at or past rev.
func applied(revs []int64, rev int64) int {
	n := 0
	for _, r := range revs {
		if r >= rev {
			n++
		}
	}
	return n
}

// storedSession is the kv value of portal/session/HEX: the session and its MAC (auth.go), so a
// store writer without the key file cannot make a session of their own — a session signed in by
// mail may add a user's first token.
type storedSession struct {
	portal.Session
	MAC []byte `json:"mac,omitempty"`
}

const kindSession = "session"

func (b *portalBackend) PutSession(ctx context.Context, key string, ps portal.Session) error {
	mac, err := recordMAC(b.s.sealer, kindSession, prefixSession+key, ps)
	if err != nil {
		return err
	}
	_, err = b.s.store.Update(ctx, func(t kv.Txn) error {
		return (&txn{Txn: t, s: b.s}).putJSON(prefixSession+key, storedSession{Session: ps, MAC: mac})
	})
	return err
}

// dropSessions ends user's portal sessions, in x: an administrator's reset, a disabled token or
// the user's deletion must not leave a session (one signed in with a lost device's code, say)
// that could enroll again. Sessions are few (swept after session_idle), so they are scanned.
func (x *txn) dropSessions(user string) error {
	var keys []string
	if err := x.Range(prefixSession, func(kvp kv.KeyValue) error {
		var v storedSession
		if json.Unmarshal(kvp.Value, &v) == nil && v.User == user {
			keys = append(keys, kvp.Key)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := x.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// GetSession reads a session; one that fails authentication is refused (logged) and is none.
func (b *portalBackend) GetSession(ctx context.Context, key string) (portal.Session, bool, error) {
	var v storedSession
	found := false
	err := b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		err := (&txn{Txn: tx, s: b.s}).getJSON(prefixSession+key, &v)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := checkRecord(b.s.sealer, kindSession, prefixSession+key, v.Session, v.MAC); err != nil {
			refused(b.s.log, prefixSession+key, err)
			return nil
		}
		found = true
		return nil
	})
	return v.Session, found, err
}

func (b *portalBackend) DeleteSession(ctx context.Context, key string) error {
	_, err := b.s.store.Update(ctx, func(t kv.Txn) error {
		return ignoreNotFound(t.Delete(prefixSession + key))
	})
	return err
}

// sweepSessions removes expired portal sessions, in one revision if any expired.
func (s *Server) sweepSessions(ctx context.Context) (int, error) {
	now := s.now()
	c := s.cfg.Portal
	var expired []string
	err := s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		if err := tx.Range(prefixSession, func(kvp kv.KeyValue) error {
			var ps portal.Session
			if err := json.Unmarshal(kvp.Value, &ps); err != nil || ps.Expired(now, c.SessionIdle, c.SessionMax) {
				expired = append(expired, kvp.Key)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Range(prefixFlow, func(kvp kv.KeyValue) error {
			var fl oidclogin.Flow
			if err := json.Unmarshal(kvp.Value, &fl); err != nil || now.Sub(fl.Created) > oidclogin.FlowLifetime {
				expired = append(expired, kvp.Key)
			}
			return nil
		})
	})
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	_, err = s.store.Update(ctx, func(t kv.Txn) error {
		for _, k := range expired {
			if err := ignoreNotFound(t.Delete(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.log.Info("expired portal sessions and sign-in flows removed", "count", len(expired))
	}
	return len(expired), err
}

// portalRoutes serves /portal/ when the portal is on.
func (s *Server) portalRoutes(mux *http.ServeMux) {
	if s.portal == nil {
		return
	}
	mux.Handle("/portal/", s.portal)
	mux.Handle("GET /portal", http.RedirectHandler("/portal/", http.StatusSeeOther))
}

// overviewRecent is how many audit records the admin overview shows.
const overviewRecent = 50

// Overview is the read-only admin overview: what a read-only admin token of every scope sees of
// the users and nodes (the same code as GET /v1/admin/users and /v1/admin/nodes), and the last
// audit records.
func (b *portalBackend) Overview(ctx context.Context, viewer string) (portal.Overview, error) {
	var o portal.Overview
	ctx = context.WithValue(ctx, adminKey{}, AdminToken{Name: actorPortal + ":" + viewer, Role: RoleReadOnly})
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return o, err
	}
	_, users, err := b.s.listUsers(r, "", nil)
	if err != nil {
		return o, err
	}
	_, nodes, err := b.s.listNodes(r, "", nil)
	if err != nil {
		return o, err
	}
	o.Users, o.Nodes = users.([]registryapi.User), nodes.([]registryapi.Node)
	var head auditHead
	err = b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		return ignoreNotFound((&txn{Txn: tx, s: b.s}).getJSON(keyAuditHead, &head))
	})
	if err != nil {
		return o, err
	}
	recs, err := b.s.Audit(ctx, max(0, head.Seq-overviewRecent), overviewRecent)
	for _, a := range recs {
		o.Audit = append(o.Audit, portal.AuditEntry{Seq: a.Seq, Time: a.Time, Actor: a.Actor, Action: a.Action, Target: a.Target, Reason: a.Reason})
	}
	b.s.log.Info("portal admin overview read", "viewer", viewer)
	return o, err
}
