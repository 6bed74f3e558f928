package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/refusal"
)

// Names of the cookies: the session, and the CSRF token of the sign-in forms before a session.
const (
	CookieSession = "__Host-pamtotp"
	CookieSignIn  = "__Host-pamtotp-signin"
)

// Headers of every response (the contract with the pages: no inline script or style).
const (
	CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	maxForm = 8 << 10
	// touchEvery bounds how often a session's last-seen time is written back.
	touchEvery = time.Minute
)

// Limits of sign-in attempts per client address (each replica counts its own).
const (
	SignInPerAddress = 30
	SignInWindow     = 10 * time.Minute
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are what a Portal is built from.
type Options struct {
	Config  Config
	Backend Backend
	Now     func() time.Time // clock.Now
	Rand    io.Reader        // crypto/rand
	Log     *slog.Logger
	// OIDC signs users in with the site's identity provider; nil without "oidc" in sign_in.
	OIDC OIDC
}

// OIDC is an OpenID Connect sign-in (package oidclogin's Login).
type OIDC interface {
	Start(w http.ResponseWriter, r *http.Request, returnTo string) error
	Finish(r *http.Request) (user string, groups []string, returnTo string, err error)
}

// Portal serves /portal/.
type Portal struct {
	cfg   Config
	be    Backend
	now   func() time.Time
	rand  io.Reader
	log   *slog.Logger
	oidc  OIDC
	pages map[string]*template.Template
	mux   *http.ServeMux
	limit *limiter
}

// New builds the portal.
func New(o Options) (*Portal, error) {
	p := &Portal{cfg: o.Config, be: o.Backend, now: o.Now, rand: o.Rand, log: o.Log, oidc: o.OIDC}
	if p.now == nil {
		p.now = clock.Now
	}
	if p.rand == nil {
		p.rand = rand.Reader
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.limit = newLimiter(SignInPerAddress, SignInWindow)
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

func (p *Portal) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/portal/static/", http.FileServerFS(static))
	m.Handle("GET /portal/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET /portal/{$}", p.root)
	m.HandleFunc("GET /portal/signin", p.signinPage)
	m.HandleFunc("POST /portal/signin/mail", p.signinMail)
	m.HandleFunc("POST /portal/signin/mailcode", p.signinMailCode)
	m.HandleFunc("POST /portal/signin/code", p.signinCode)
	m.HandleFunc("GET /portal/oidc/start", p.oidcStart)
	m.HandleFunc("GET /portal/oidc/callback", p.oidcCallback)
	m.HandleFunc("POST /portal/signout", p.signout)
	m.Handle("GET /portal/tokens", p.authed(p.tokensPage))
	m.Handle("POST /portal/tokens", p.authed(p.saved))
	m.Handle("GET /portal/tokens/new", p.authed(p.newTokenPage))
	m.Handle("POST /portal/tokens/new", p.authed(p.newToken))
	// One pattern for pending/{id}, {id}/active and {id}/nodes (ServeMux would find the first
	// two in conflict).
	m.Handle("GET /portal/tokens/{a}/{b}", p.authed(p.tokenGet))
	m.Handle("POST /portal/tokens/pending/{id}/verify", p.authed(p.verify))
	m.Handle("POST /portal/tokens/{id}/rename", p.authed(p.rename))
	m.Handle("POST /portal/tokens/{id}/remove", p.authed(p.remove))
	m.Handle("POST /portal/backup-codes", p.authed(p.backupCodes))
	m.Handle("GET /portal/admin", p.authed(p.adminPage))
	p.mux = m
}

// ServeHTTP sets the headers of every response, then routes.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	p.mux.ServeHTTP(w, r)
}

// clientAddr is the client's IP address (the portal is served directly, not behind a proxy).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// by names the portal and the client in mail notices.
func by(r *http.Request) string { return "the web portal, from " + clientAddr(r) }

// newSecret is 32 random bytes, base64url.
func (p *Portal) newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(p.rand, b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sessionKey is the store key of session id: hex SHA-256, so the store never holds the id.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// equal compares two tokens in constant time; empty never matches.
func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// signedIn is the request's session.
type signedIn struct {
	Session
	key string
}

// session returns the request's live session, if any; an expired one is deleted.
func (p *Portal) session(r *http.Request) (signedIn, bool, error) {
	c, err := r.Cookie(CookieSession)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return signedIn{}, false, nil
	}
	key := sessionKey(c.Value)
	s, ok, err := p.be.GetSession(r.Context(), key)
	if err != nil || !ok {
		return signedIn{}, false, err
	}
	now := p.now()
	if s.Expired(now, p.cfg.SessionIdle, p.cfg.SessionMax) {
		if err := p.be.DeleteSession(r.Context(), key); err != nil {
			p.log.Warn("delete expired portal session", "user", s.User, "err", err)
		}
		p.log.Info("portal session expired", "user", s.User)
		return signedIn{}, false, nil
	}
	if now.Sub(s.LastSeen) >= min(touchEvery, p.cfg.SessionIdle/10) {
		s.LastSeen = now.UTC()
		if err := p.be.PutSession(r.Context(), key, s); err != nil {
			return signedIn{}, false, err
		}
	}
	return signedIn{Session: s, key: key}, true, nil
}

// startSession signs user in: a new session record and its cookie.
func (p *Portal) startSession(w http.ResponseWriter, r *http.Request, user, method string, groups []string) error {
	id, err := p.newSecret()
	if err != nil {
		return err
	}
	csrf, err := p.newSecret()
	if err != nil {
		return err
	}
	now := p.now().UTC()
	s := Session{User: user, Method: method, Created: now, LastSeen: now, CSRF: csrf, Groups: groups}
	if err := p.be.PutSession(r.Context(), sessionKey(id), s); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieSession, Value: id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	// The sign-in forms' token is spent.
	http.SetCookie(w, &http.Cookie{Name: CookieSignIn, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	p.log.Info("portal sign-in", "user", user, "method", method, "client", clientAddr(r))
	return nil
}

// authedFunc handles a request of a signed-in session; POSTs come with their CSRF token checked.
type authedFunc func(w http.ResponseWriter, r *http.Request, s signedIn)

// authed finds the session (else to the sign-in page, or 403 for a POST) and checks a POST's
// CSRF token against it.
func (p *Portal) authed(f authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok, err := p.session(r)
		if err != nil {
			p.fail(w, r, "read the session", err)
			return
		}
		if r.Method == http.MethodPost {
			if err := p.parseForm(w, r); err != nil {
				p.errorPage(w, r, http.StatusBadRequest, nil, "The form could not be read.")
				return
			}
			if !ok || !equal(r.PostForm.Get("csrf"), s.CSRF) {
				p.log.Warn("portal request refused: no session or a wrong CSRF token", "path", r.URL.Path,
					"session", ok, "client", clientAddr(r))
				p.errorPage(w, r, http.StatusForbidden, nil, "This form has expired or did not come from this site. Sign in and try again.")
				return
			}
		}
		if !ok {
			http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
			return
		}
		f(w, r, s)
	})
}

func (p *Portal) parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	return r.ParseForm()
}

// fail answers an internal error: a plain sentence for the user, the error to the log.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	p.log.Error("portal: "+what, "path", r.URL.Path, "err", err)
	p.errorPage(w, r, http.StatusServiceUnavailable, nil, "Something went wrong on our side; try again in a minute.")
}

// refused answers err: a refusal's sentence (404 for unknown ids), or fail.
func (p *Portal) refused(w http.ResponseWriter, r *http.Request, s *signedIn, what string, err error) {
	re, ok := refusal.As(err)
	if !ok {
		p.fail(w, r, what, err)
		return
	}
	status := re.Kind.HTTPStatus()
	user := ""
	if s != nil {
		user = s.User
	}
	p.log.Warn("portal request refused", "path", r.URL.Path, "user", user, "kind", string(re.Kind), "client", clientAddr(r))
	p.errorPage(w, r, status, s, sentence(re.Message))
}

// sentence makes a refusal's message a sentence.
func sentence(m string) string {
	if m == "" {
		return m
	}
	m = strings.ToUpper(m[:1]) + m[1:]
	if !strings.HasSuffix(m, ".") {
		m += "."
	}
	return m
}

func (p *Portal) root(w http.ResponseWriter, r *http.Request) {
	_, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, "read the session", err)
		return
	}
	if ok {
		http.Redirect(w, r, "/portal/tokens", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
}

func (p *Portal) signout(w http.ResponseWriter, r *http.Request) {
	if err := p.parseForm(w, r); err != nil {
		p.errorPage(w, r, http.StatusBadRequest, nil, "The form could not be read.")
		return
	}
	s, ok, err := p.session(r)
	if err != nil {
		p.fail(w, r, "read the session", err)
		return
	}
	if ok && !equal(r.PostForm.Get("csrf"), s.CSRF) {
		p.log.Warn("portal sign-out refused: wrong CSRF token", "user", s.User, "client", clientAddr(r))
		p.errorPage(w, r, http.StatusForbidden, nil, "This form has expired or did not come from this site.")
		return
	}
	if ok {
		if err := p.be.DeleteSession(r.Context(), s.key); err != nil {
			p.fail(w, r, "delete the session", err)
			return
		}
		p.log.Info("portal sign-out", "user", s.User, "client", clientAddr(r))
	}
	http.SetCookie(w, &http.Cookie{Name: CookieSession, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/portal/signin?signedout=1", http.StatusSeeOther)
}
