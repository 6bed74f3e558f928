package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/portal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// The web portal's side in the registry (package portal serves the pages): its Backend on the
// same enrollment rules as /v1/enroll (enroll.Service on the kv store, bound to no node scope:
// the portal serves every user the registry knows), and its sessions in the kv store:
//
//	portal/session/HEX  a session: HEX is the SHA-256 of the id in the cookie (portal.Session)
//
// so any replica serves a session and signing out ends it on all of them; the sweep removes
// expired ones every minute.
const (
	prefixSession = "portal/session/"
	actorPortal   = "portal"
)

// initPortal builds the portal when [portal] enabled.
func (s *Server) initPortal() error {
	if !s.cfg.Portal.Enabled {
		return nil
	}
	p, err := portal.New(portal.Options{Config: s.cfg.Portal, Backend: &portalBackend{s: s}, Now: s.now, Rand: s.rand,
		Log: s.log.With("component", "portal"), OIDC: s.portalOIDC()})
	if err != nil {
		return fmt.Errorf("portal: %w", err)
	}
	s.portal = p
	return nil
}

// portalOIDC is the OpenID Connect sign-in of [portal.oidc], or nil.
func (s *Server) portalOIDC() portal.OIDC { return nil }

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
		revs, total := b.s.nodeRevs(x, u)
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
		return x.Range(prefixPending+user+"/", func(kvp kv.KeyValue) error {
			var p pendingRecord
			if err := json.Unmarshal(kvp.Value, &p); err != nil || !now.Before(p.Expires) {
				return nil // expired: the sweep removes it
			}
			v, err := b.s.sealer.Open(p.Sealed, []byte(kvp.Key))
			if err != nil {
				return fmt.Errorf("open %s: %w", kvp.Key, err)
			}
			var t token.Token
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode %s: %w", kvp.Key, err)
			}
			out = append(out, portal.Token{ID: t.ID, Name: t.Name, Created: t.Created, State: "pending", Total: total})
			return nil
		})
	})
	if isNotFound(err) {
		return nil, nil // a user deleted during the session has nothing
	}
	return out, err
}

// Nodes counts the login nodes serving user that applied token id.
func (b *portalBackend) Nodes(ctx context.Context, user, id string) (active, total int, err error) {
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
		var revs []int64
		revs, total = b.s.nodeRevs(x, u)
		active = applied(revs, kvp.ModRev)
		return nil
	})
	return active, total, err
}

// nodeRevs are the applied revisions (from their last acks; 0 before any) of the nodes whose
// scope serves u, and how many there are.
func (s *Server) nodeRevs(x *txn, u User) ([]int64, int) {
	var names []string
	_ = x.Range(prefixNode, func(kvp kv.KeyValue) error {
		n, err := s.decodeNode(kvp.Key, kvp.Value)
		if err == nil && visible(u.Scopes, n.Scope) {
			names = append(names, n.Name)
		}
		return nil
	})
	revs := make([]int64, len(names))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range names {
		revs[i] = s.acks[n].Rev
	}
	return revs, len(names)
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

func (b *portalBackend) PutSession(ctx context.Context, key string, ps portal.Session) error {
	_, err := b.s.store.Update(ctx, func(t kv.Txn) error {
		return (&txn{Txn: t, s: b.s}).putJSON(prefixSession+key, ps)
	})
	return err
}

func (b *portalBackend) GetSession(ctx context.Context, key string) (portal.Session, bool, error) {
	var ps portal.Session
	found := false
	err := b.s.store.View(ctx, func(_ int64, tx kv.Txn) error {
		err := (&txn{Txn: tx, s: b.s}).getJSON(prefixSession+key, &ps)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	return ps, found, err
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
		return tx.Range(prefixSession, func(kvp kv.KeyValue) error {
			var ps portal.Session
			if err := json.Unmarshal(kvp.Value, &ps); err != nil || ps.Expired(now, c.SessionIdle, c.SessionMax) {
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
		s.log.Info("expired portal sessions removed", "count", len(expired))
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
