// Package oidctest is a real OpenID provider for tests and demos, built with
// github.com/zitadel/oidc/v3's op package: discovery, keys, the authorization endpoint with PKCE,
// the token and userinfo endpoints, and a login page that a browser (or a test posting the form)
// fills in. It serves on 127.0.0.1, over plain HTTP or, with Options.TLS, over TLS with a
// certificate that Provider.HTTPClient trusts.
//
// A test defines the users (name, password, groups, further claims) and registers the clients
// (id, secret or none for a public client, redirect URIs). The login page at /login has
// form#login with input#username, input#password and button#login, and button#deny, which
// answers the client with error=access_denied. Authorization codes live CodeLifetime by the
// provider's clock, which Advance moves forward, so that a test can make a code expire.
//
//	idp, err := oidctest.Start(oidctest.Options{
//		Users:   []oidctest.User{{Name: "alice", Password: "pw", Groups: []string{"hpc"}}},
//		Clients: []oidctest.Client{{ID: "portal", Secret: "s3cret", RedirectURIs: []string{callback}}},
//	})
//	defer idp.Close()
//	// issuer: idp.Issuer(); HTTP client that trusts it: idp.HTTPClient()
//
// ID tokens are signed with a fresh RSA key (RS256) and carry sub ("sub-" + the user's name),
// preferred_username (with the profile scope), groups (a list, when the user has groups) and the
// user's further claims, which may also replace groups (a string, say).
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is someone who can sign in at the provider.
type User struct {
	// Name is the login name and the preferred_username claim.
	Name     string
	Password string
	// Groups is the groups claim (a list), left out when empty.
	Groups []string
	// Claims are further ID token and userinfo claims; they replace groups when they set it.
	Claims map[string]any
}

// Client is a relying party registered at the provider.
type Client struct {
	ID string
	// Secret is the client secret (HTTP Basic at the token endpoint); "" is a public client,
	// which must use PKCE.
	Secret string
	// RedirectURIs are the callback URLs the client may ask for (http is allowed: a test setup).
	RedirectURIs []string
	// Audience, when set, replaces the aud of the client's ID tokens (the provider re-signs them),
	// as a misconfigured or hostile provider might: a test names another client here to see a
	// relying party refuse a token that was not made for it.
	Audience []string
}

// Options configure Start.
type Options struct {
	Users   []User
	Clients []Client
	// CodeLifetime is how long an authorization code can be exchanged; 0 is one minute.
	CodeLifetime time.Duration
	// TLS serves https with a test certificate instead of plain http.
	TLS bool
}

// Provider is a running OpenID provider.
type Provider struct {
	srv *httptest.Server
	op  *op.Provider
	st  *storage
}

// Start starts a provider on a free port of 127.0.0.1.
func Start(o Options) (*Provider, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidctest: signing key: %w", err)
	}
	st := &storage{
		key: key, keyID: randomID(), codeLifetime: o.CodeLifetime,
		users: map[string]User{}, clients: map[string]*client{},
		requests: map[string]*authRequest{}, codes: map[string]code{}, tokens: map[string]string{},
	}
	if st.codeLifetime <= 0 {
		st.codeLifetime = time.Minute
	}
	p := &Provider{st: st}
	for _, u := range o.Users {
		p.AddUser(u)
	}
	for _, c := range o.Clients {
		p.AddClient(c)
	}
	p.srv = httptest.NewUnstartedServer(nil)
	scheme := "http"
	if o.TLS {
		scheme = "https"
	}
	issuer := scheme + "://" + p.srv.Listener.Addr().String()
	cfg := &op.Config{CodeMethodS256: true, SupportedScopes: []string{oidc.ScopeOpenID, oidc.ScopeProfile}}
	if _, err := rand.Read(cfg.CryptoKey[:]); err != nil {
		return nil, err
	}
	var opts []op.Option
	if !o.TLS {
		opts = append(opts, op.WithAllowInsecure())
	}
	p.op, err = op.NewProvider(cfg, st, op.StaticIssuer(issuer), opts...)
	if err != nil {
		p.srv.Close()
		return nil, fmt.Errorf("oidctest: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/login", op.NewIssuerInterceptor(p.op.IssuerFromRequest).HandlerFunc(p.login))
	mux.Handle("/", p.op)
	mux.Handle(p.op.TokenEndpoint().Relative(), p.audience(p.op))
	p.srv.Config.Handler = mux
	if o.TLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	return p, nil
}

// Issuer is the provider's issuer URL, http(s)://127.0.0.1:PORT.
func (p *Provider) Issuer() string { return p.srv.URL }

// HTTPClient is a client that trusts the provider's certificate (with TLS).
func (p *Provider) HTTPClient() *http.Client { return p.srv.Client() }

// Close stops the provider.
func (p *Provider) Close() { p.srv.Close() }

// AddUser adds or replaces a user.
func (p *Provider) AddUser(u User) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.users[u.Name] = u
}

// AddClient registers or replaces a client.
func (p *Provider) AddClient(c Client) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.clients[c.ID] = &client{Client: c, loginURL: p.loginURL}
}

// Advance moves the provider's clock forward by d: authorization codes issued more than
// CodeLifetime before the moved clock are refused. ID tokens are stamped by the wall clock.
func (p *Provider) Advance(d time.Duration) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.offset += d
}

func (p *Provider) loginURL(id string) string { return p.srv.URL + "/login?id=" + id }

// audience wraps the token endpoint: an ID token for a client with an Audience gets that aud,
// re-signed with the provider's key.
func (p *Provider) audience(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			if b, err := p.st.readdress(body); err == nil {
				body = b
			}
		}
		maps.Copy(w.Header(), rec.Header())
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// readdress sets the aud of the ID token in a token response to its client's Audience.
func (s *storage) readdress(body []byte) ([]byte, error) {
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	raw, _ := resp["id_token"].(string)
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(&s.key.PublicKey)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	azp, _ := claims["azp"].(string)
	s.mu.Lock()
	c := s.clients[azp]
	s.mu.Unlock()
	if c == nil || c.Audience == nil {
		return body, nil
	}
	claims["aud"] = c.Audience
	if payload, err = json.Marshal(claims); err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.keyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	signed, err := signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	if resp["id_token"], err = signed.CompactSerialize(); err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><main><h1>Test identity provider</h1>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
<form id="login" method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<p><label for="username">User name</label> <input id="username" name="username" autocomplete="username"></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password"></p>
<p><button id="login" type="submit">Sign in</button> <button id="deny" type="submit" name="deny" value="1">Cancel</button></p>
</form></main></body></html>
`))

// login serves the login page (GET /login?id=REQUEST) and takes its form (POST /login).
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.FormValue("id")
	req, err := p.st.AuthRequestByID(r.Context(), id)
	if err != nil {
		http.Error(w, "unknown or finished sign-in request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	var msg string
	if r.Method == http.MethodPost {
		if r.FormValue("deny") != "" {
			op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("the user cancelled the sign-in"), p.op)
			return
		}
		if p.st.signIn(id, r.FormValue("username"), r.FormValue("password")) {
			http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
			return
		}
		msg = "Wrong user name or password."
		w.WriteHeader(http.StatusUnauthorized)
	}
	_ = loginPage.Execute(w, struct{ ID, Error string }{id, msg})
}

// storage is the op.Storage: everything in memory, only what the authorization code flow needs.
type storage struct {
	key          *rsa.PrivateKey
	keyID        string
	codeLifetime time.Duration

	mu       sync.Mutex
	offset   time.Duration
	users    map[string]User
	clients  map[string]*client
	requests map[string]*authRequest
	codes    map[string]code
	tokens   map[string]string // access token id -> subject
}

type code struct {
	request string
	issued  time.Time
}

var _ op.Storage = (*storage)(nil)

var errUnsupported = errors.New("not supported by the test provider")

func (s *storage) now() time.Time { return time.Now().Add(s.offset) }

func (s *storage) signIn(id, name, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	req := s.requests[id]
	if !ok || req == nil || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return false
	}
	req.subject, req.authTime, req.done = subjectOf(name), time.Now(), true
	return true
}

func subjectOf(name string) string { return "sub-" + name }

func (s *storage) userBySubject(sub string) (User, bool) {
	for _, u := range s.users {
		if subjectOf(u.Name) == sub {
			return u, true
		}
	}
	return User{}, false
}

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req := &authRequest{id: randomID(), r: *r}
	if r.CodeChallenge != "" {
		req.challenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.requests[req.id] = req
	return req, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req := s.requests[id]; req != nil {
		return req, nil
	}
	return nil, errors.New("no such auth request")
}

func (s *storage) AuthRequestByCode(_ context.Context, c string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[c]
	if !ok {
		return nil, errors.New("unknown code")
	}
	if s.now().Sub(e.issued) > s.codeLifetime {
		delete(s.codes, c)
		return nil, errors.New("code expired")
	}
	if req := s.requests[e.request]; req != nil {
		return req, nil
	}
	return nil, errors.New("code of a finished request")
}

func (s *storage) SaveAuthCode(_ context.Context, id, c string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[c] = code{request: id, issued: s.now()}
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for c, e := range s.codes {
		if e.request == id {
			delete(s.codes, c)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := randomID()
	s.tokens[id] = r.GetSubject()
	return id, time.Now().Add(5 * time.Minute), nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errUnsupported
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errUnsupported
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, id, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, id)
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{s}, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s}}, nil }

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[id]; c != nil {
		return c, nil
	}
	return nil, errors.New("unknown client")
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	if c == nil || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("wrong client id or secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest fills the ID token.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	return s.userinfo(info, r.GetSubject(), scopes)
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	sub, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || sub != subject {
		return errors.New("unknown access token")
	}
	return s.userinfo(info, subject, []string{oidc.ScopeProfile})
}

func (s *storage) userinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.userBySubject(subject)
	if !ok {
		return errors.New("unknown user")
	}
	info.Subject = subject
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.PreferredUsername = u.Name
	}
	if len(u.Groups) > 0 {
		info.AppendClaims("groups", u.Groups)
	}
	for k, v := range u.Claims {
		info.AppendClaims(k, v)
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errUnsupported
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errUnsupported
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errUnsupported
}

func (s *storage) Health(context.Context) error { return nil }

type signingKey struct{ s *storage }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.s.key }
func (k signingKey) ID() string                                  { return k.s.keyID }

type publicKey struct{ s *storage }

func (k publicKey) ID() string                         { return k.s.keyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.s.key.PublicKey }

// authRequest is one authorization request, from the authorization endpoint to the token exchange.
type authRequest struct {
	id        string
	r         oidc.AuthRequest
	challenge *oidc.CodeChallenge
	subject   string
	authTime  time.Time
	done      bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.r.ClientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.r.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.r.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.r.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.r.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.r.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return a.r.Scopes }
func (a *authRequest) GetState() string                      { return a.r.State }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// client is a registered Client as op sees it: a web application, code flow only.
type client struct {
	Client
	loginURL func(string) string
}

func (c *client) GetID() string                    { return c.ID }
func (c *client) RedirectURIs() []string           { return c.Client.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *client) LoginURL(id string) string    { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return time.Hour }

// DevMode lets the client use http redirect URIs on the loopback.
func (c *client) DevMode() bool { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion puts the profile claims in the ID token, as Keycloak does.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
