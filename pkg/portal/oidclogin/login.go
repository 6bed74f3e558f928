package oidclogin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Errors of Start and Finish. Their texts are plain sentences that the portal may show to the
// user; the detail goes to the log.
var (
	// ErrFlow is a callback whose state names no flow of this browser: wrong, already used, or
	// older than FlowLifetime.
	ErrFlow = errors.New("this sign-in was not started here, was already used or took too long; please sign in again")
	// ErrDenied is the provider's answer that it did not sign the user in (an error parameter
	// such as access_denied).
	ErrDenied = errors.New("the identity provider did not sign you in")
	// ErrExchange is an authorization code that the provider refused: missing, expired, already
	// used or issued to another client.
	ErrExchange = errors.New("the identity provider did not accept this sign-in; please sign in again")
	// ErrToken is an ID token that fails verification: signature, issuer, audience, expiry or nonce.
	ErrToken = errors.New("the identity provider's answer could not be verified; please sign in again")
	// ErrUser is an ID token without a valid registry user name in the username claim.
	ErrUser = errors.New("the identity provider did not name a user that this site can sign in")
	// ErrGroup is a user who is not in the required group.
	ErrGroup = errors.New("your account is not in the group allowed to sign in here")
	// ErrUnavailable is a failure of the flow store or of the connection to the provider.
	ErrUnavailable = errors.New("signing in with the identity provider is not possible right now; please try again later")
	// ErrReturn is a return path given to Start that is not a local path.
	ErrReturn = errors.New("return path is not a local path")
)

// cookieName binds a flow to the browser that started it: the provider's redirect back is a
// cross-site top-level GET, on which a SameSite=Lax cookie is sent (and the portal's Strict
// session cookie is not).
const cookieName = "__Host-pamtotp-oidc"

// Identity is who the provider signed in.
type Identity struct {
	// User is the registry user name, from the username claim.
	User string
	// Groups are the values of the groups claim (none when it is absent).
	Groups []string
	// Subject and Issuer are the ID token's sub and iss: the provider's own name of the user.
	Subject, Issuer string
}

// Options are what the caller provides besides the config.
type Options struct {
	// Store keeps the flows between Start and Finish (required).
	Store FlowStore
	// RedirectURL is the callback URL registered at the provider, absolute
	// (https://registry.example.org:8443/portal/oidc/callback) or a path (/portal/oidc/callback)
	// that each request completes with its own scheme and Host.
	RedirectURL string
	// Now is the clock for flow ages and ID token expiry; nil is time.Now.
	Now func() time.Time
	// HTTPClient talks to the provider (discovery, keys, token endpoint); nil is a client with a
	// 30 s timeout.
	HTTPClient *http.Client
	// Log receives one line per refused or finished sign-in; nil discards.
	Log *slog.Logger
}

// Login runs sign-ins against one provider. It is safe for concurrent use.
type Login struct {
	cfg      Config
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	store    FlowStore
	redirect string
	now      func() time.Time
	client   *http.Client
	log      *slog.Logger
}

// New checks c, reads the client secret and asks the issuer for its discovery document.
func New(ctx context.Context, c Config, o Options) (*Login, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if o.Store == nil {
		return nil, errors.New("oidc login: no flow store")
	}
	if err := validRedirect(o.RedirectURL); err != nil {
		return nil, err
	}
	l := &Login{cfg: c, store: o.Store, redirect: o.RedirectURL, now: o.Now, client: o.HTTPClient, log: o.Log}
	if l.now == nil {
		l.now = time.Now
	}
	if l.client == nil {
		l.client = &http.Client{Timeout: 30 * time.Second}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	var secret string
	if c.ClientSecretFile != "" {
		b, err := securefile.ReadFile(c.ClientSecretFile, securefile.Secret, 4096)
		if err != nil {
			return nil, fmt.Errorf("portal.oidc client_secret_file: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
		clear(b)
		if secret == "" {
			return nil, fmt.Errorf("portal.oidc client_secret_file %s: empty", c.ClientSecretFile)
		}
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, l.client), c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("portal.oidc discovery at %s: %w", c.Issuer, err)
	}
	endpoint := provider.Endpoint()
	if secret == "" {
		// A public client sends its id in the form, with the PKCE verifier as its proof.
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range c.Scopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	l.oauth = oauth2.Config{ClientID: c.ClientID, ClientSecret: secret, Endpoint: endpoint, Scopes: scopes}
	l.verifier = provider.Verifier(&oidc.Config{ClientID: c.ClientID, Now: l.now})
	return l, nil
}

// Start begins a sign-in: it keeps a new flow (state, nonce, PKCE verifier, returnTo) in the
// store, sets the browser's flow cookie and redirects to the provider. returnTo must be a local
// path ("/portal/tokens").
func (l *Login) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	if !localPath(returnTo) {
		return ErrReturn
	}
	state, err := random()
	if err != nil {
		return err
	}
	nonce, err := random()
	if err != nil {
		return err
	}
	f := Flow{State: state, Nonce: nonce, Verifier: oauth2.GenerateVerifier(), Return: returnTo, Created: l.now()}
	if err := l.store.Put(r.Context(), f); err != nil {
		l.log.Error("oidc sign-in not started: flow store", "err", err, "client", r.RemoteAddr)
		return ErrUnavailable
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: state, Path: "/", MaxAge: int(FlowLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	cfg := l.oauth
	cfg.RedirectURL = l.redirectFor(r)
	http.Redirect(w, r, cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusSeeOther)
	return nil
}

// Finish handles the provider's redirect to the callback URL: the flow of its state (taken once,
// refused when older than FlowLifetime or started by another browser), the provider's error
// parameter, the code exchanged with the PKCE verifier, the ID token verified (signature, issuer,
// audience, expiry, nonce), the username and groups claims, the required group. It returns the
// identity and the flow's return path. Its errors are the sentences above, for the user.
func (l *Login) Finish(r *http.Request) (Identity, string, error) {
	q := r.URL.Query()
	state := q.Get("state")
	var (
		f   Flow
		ok  bool
		err error
	)
	if state != "" {
		if f, ok, err = l.store.Take(r.Context(), state); err != nil {
			return l.refuse(r, ErrUnavailable, "flow store", err)
		}
	}
	if e := q.Get("error"); e != "" {
		return l.refuse(r, deniedError(e), "provider answered "+errorCode(e), nil)
	}
	switch {
	case state == "":
		return l.refuse(r, ErrFlow, "callback without state", nil)
	case !ok:
		return l.refuse(r, ErrFlow, "unknown or used state", nil)
	case !l.sameBrowser(r, state):
		return l.refuse(r, ErrFlow, "flow cookie missing or of another flow", nil)
	}
	if age := l.now().Sub(f.Created); age > FlowLifetime || age < -time.Minute {
		return l.refuse(r, ErrFlow, fmt.Sprintf("flow started %s ago", age.Round(time.Second)), nil)
	}
	code := q.Get("code")
	if code == "" {
		return l.refuse(r, ErrExchange, "callback without code", nil)
	}
	ctx := oidc.ClientContext(r.Context(), l.client)
	cfg := l.oauth
	cfg.RedirectURL = l.redirectFor(r)
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Only the provider's error code and description: never the code or the response body.
			return l.refuse(r, ErrExchange, "token endpoint", fmt.Errorf("%s: %s", errorCode(re.ErrorCode), re.ErrorDescription))
		}
		return l.refuse(r, ErrUnavailable, "token endpoint", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return l.refuse(r, ErrToken, "token response without id_token", nil)
	}
	idt, err := l.verifier.Verify(ctx, raw)
	if err != nil {
		return l.refuse(r, ErrToken, "id token", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return l.refuse(r, ErrToken, "id token nonce is not the flow's", nil)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return l.refuse(r, ErrToken, "id token claims", err)
	}
	id, err := l.identity(claims)
	id.Subject, id.Issuer = idt.Subject, idt.Issuer
	if err != nil {
		userErr := ErrUser
		if errors.Is(err, ErrGroup) {
			userErr = ErrGroup
		}
		return l.refuse(r, userErr, "claims of subject "+idt.Subject+" (user "+strconv.Quote(id.User)+")", err)
	}
	l.log.Info("oidc sign-in", "user", id.User, "subject", id.Subject, "issuer", id.Issuer, "client", r.RemoteAddr)
	return id, f.Return, nil
}

// identity maps the claims to the user name and groups and enforces the required group.
func (l *Login) identity(claims map[string]any) (Identity, error) {
	user, _ := claims[l.cfg.UsernameClaim].(string)
	if token.ValidUser(user) != nil {
		return Identity{}, ErrUser
	}
	id := Identity{User: user}
	groups, ok := groupsOf(claims[l.cfg.GroupsClaim])
	if ok {
		id.Groups = groups
	}
	if l.cfg.RequiredGroup != "" && !slices.Contains(groups, l.cfg.RequiredGroup) {
		if !ok {
			// Only the log says it: the claim is the site's setup, not the user's doing.
			return id, fmt.Errorf("%w (the %s claim is neither a string nor a list of strings)", ErrGroup, l.cfg.GroupsClaim)
		}
		return id, ErrGroup
	}
	return id, nil
}

// groupsOf reads a groups claim: absent, one string, or a list of strings.
func groupsOf(v any) ([]string, bool) {
	switch v := v.(type) {
	case nil:
		return nil, true
	case string:
		return []string{v}, true
	case []any:
		groups := make([]string, 0, len(v))
		for _, g := range v {
			s, ok := g.(string)
			if !ok {
				return nil, false
			}
			groups = append(groups, s)
		}
		return groups, true
	}
	return nil, false
}

// refuse logs why a callback was refused and returns the user's error.
func (l *Login) refuse(r *http.Request, userErr error, why string, detail error) (Identity, string, error) {
	args := []any{"reason", why, "client", r.RemoteAddr}
	if detail != nil {
		args = append(args, "err", detail)
	}
	l.log.Warn("oidc sign-in refused", args...)
	return Identity{}, "", userErr
}

// sameBrowser reports whether the request carries the flow cookie that Start set for state.
func (l *Login) sameBrowser(r *http.Request, state string) bool {
	c, err := r.Cookie(cookieName)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) == 1
}

// redirectFor is the callback URL of this request: the configured one, completed with the
// request's scheme and Host when it is a path.
func (l *Login) redirectFor(r *http.Request) string {
	if !strings.HasPrefix(l.redirect, "/") {
		return l.redirect
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: l.redirect}).String()
}

// validRedirect accepts an absolute http(s) URL or a local path.
func validRedirect(s string) error {
	if localPath(s) {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("oidc login: redirect URL %q: want https://HOST/portal/oidc/callback or a path", s)
	}
	return nil
}

// localPath is a path on this site: one leading slash, not "//" or "/\" (which browsers read as
// another host), no scheme, no control characters.
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || len(p) > 1024 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] == 0x7f {
			return false
		}
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == ""
}

// deniedError is ErrDenied naming the provider's error code, when it is a plain one.
func deniedError(code string) error {
	if c := errorCode(code); c != "?" {
		return fmt.Errorf("%w (%s)", ErrDenied, c)
	}
	return ErrDenied
}

// errorCode is an OAuth error code as it may be shown and logged: lower-case letters and
// underscores (RFC 6749 codes), else "?".
func errorCode(s string) string {
	if s == "" || len(s) > 64 {
		return "?"
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return "?"
		}
	}
	return s
}

// random is 256 bits from crypto/rand, base64url without padding.
func random() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oidc login: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
