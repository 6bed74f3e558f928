package oidclogin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin"
	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin/oidctest"
)

const callbackPath = "/portal/oidc/callback"

// clock is a settable clock: the wall clock moved by an offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rp is a relying party: a TLS server on 127.0.0.1 that serves /portal/oidc/start and the
// callback with a Login, as the portal does.
type rp struct {
	srv   *httptest.Server
	login *oidclogin.Login
	clock *clock
	log   *syncBuffer
}

// result is what the rp's callback answers.
type result struct {
	Status   int
	Identity oidclogin.Identity
	Return   string
	Error    string
}

// startRP starts a relying party registered at idp as client id (secret "" for a public client)
// and builds its Login from cfg (Issuer and ClientID filled in). The client is registered with
// aud (nil: its own id) as the audience of its ID tokens.
func startRP(t *testing.T, idp *oidctest.Provider, cfg oidclogin.Config, secret string, aud []string, store oidclogin.FlowStore) *rp {
	t.Helper()
	r := &rp{clock: &clock{}, log: &syncBuffer{}}
	mux := http.NewServeMux()
	r.srv = httptest.NewUnstartedServer(mux)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	idp.AddClient(oidctest.Client{ID: cfg.ClientID, Secret: secret, RedirectURIs: []string{r.srv.URL + callbackPath}, Audience: aud})
	cfg.Issuer = idp.Issuer()
	if secret != "" {
		dir := t.TempDir()
		cfg.ClientSecretFile = filepath.Join(dir, "client-secret")
		if err := os.WriteFile(cfg.ClientSecretFile, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if store == nil {
		store = &oidclogin.MemoryFlows{Now: r.clock.Now}
	}
	var err error
	r.login, err = oidclogin.New(context.Background(), cfg, oidclogin.Options{
		Store: store, RedirectURL: callbackPath, Now: r.clock.Now,
		HTTPClient: idp.HTTPClient(), Log: slog.New(slog.NewTextHandler(r.log, nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux.HandleFunc("GET /portal/oidc/start", func(w http.ResponseWriter, req *http.Request) {
		if err := r.login.Start(w, req, "/portal/tokens"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET "+callbackPath, func(w http.ResponseWriter, req *http.Request) {
		id, ret, err := r.login.Finish(req)
		res := result{Status: http.StatusOK, Identity: id, Return: ret}
		if err != nil {
			res = result{Status: http.StatusForbidden, Error: err.Error()}
		}
		w.WriteHeader(res.Status)
		_ = json.NewEncoder(w).Encode(res)
	})
	return r
}

// browser is an HTTP client with its own cookies that trusts the rp's certificate and stops
// before the rp's callback, so that a test can look at (and change) the callback URL.
func (r *rp) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := r.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == callbackPath {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// signIn starts a sign-in at the rp and fills the provider's login form as user; it returns the
// callback URL the provider redirects to. deny presses Cancel instead of Sign in.
func (r *rp) signIn(t *testing.T, b *http.Client, user, password string, deny bool) *url.URL {
	t.Helper()
	resp, err := b.Get(r.srv.URL + "/portal/oidc/start")
	if err != nil {
		t.Fatalf("GET start: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`id="username"`)) {
		t.Fatalf("start: %s %s, want the provider's login page", resp.Status, page)
	}
	form := url.Values{"id": {resp.Request.URL.Query().Get("id")}, "username": {user}, "password": {password}}
	if deny {
		form.Set("deny", "1")
	}
	loginURL := *resp.Request.URL
	loginURL.RawQuery = ""
	resp, err = b.PostForm(loginURL.String(), form)
	if err != nil {
		t.Fatalf("POST login: %v", err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode/100 != 3 || err != nil || loc.Path != callbackPath {
		t.Fatalf("login form: %s, location %v, want a redirect to %s", resp.Status, loc, callbackPath)
	}
	return loc
}

// callback follows the provider's redirect to the rp's callback.
func (r *rp) callback(t *testing.T, b *http.Client, u *url.URL) result {
	t.Helper()
	resp, err := b.Get(u.String())
	if err != nil {
		t.Fatalf("GET callback: %v", err)
	}
	defer resp.Body.Close()
	var res result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("callback answer: %v", err)
	}
	return res
}

func startIdP(t *testing.T) *oidctest.Provider {
	t.Helper()
	idp, err := oidctest.Start(oidctest.Options{
		Users: []oidctest.User{
			{Name: "alice", Password: "alice-pw", Groups: []string{"hpc", "staff"}},
			{Name: "bob", Password: "bob-pw"},
			{Name: "carol", Password: "carol-pw", Claims: map[string]any{"groups": "hpc"}},
			{Name: "bad\x01name", Password: "pw", Groups: []string{"hpc"}},
			{Name: "dave", Password: "dave-pw", Claims: map[string]any{"groups": []any{map[string]any{"name": "hpc"}}}},
		},
		CodeLifetime: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

func config(clientID string) oidclogin.Config {
	c := oidclogin.DefaultConfig()
	c.ClientID = clientID
	c.RequiredGroup = "hpc"
	return c
}

func TestSignIn(t *testing.T) {
	idp := startIdP(t)
	r := startRP(t, idp, config("portal"), "portal-secret", nil, nil)

	for _, tt := range []struct {
		name, user, password string
		want                 []string
	}{
		{"groups as a list", "alice", "alice-pw", []string{"hpc", "staff"}},
		{"groups as a string", "carol", "carol-pw", []string{"hpc"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := r.browser(t)
			res := r.callback(t, b, r.signIn(t, b, tt.user, tt.password, false))
			want := oidclogin.Identity{User: tt.user, Groups: tt.want, Subject: "sub-" + tt.user, Issuer: idp.Issuer()}
			if res.Status != http.StatusOK || !reflect.DeepEqual(res.Identity, want) || res.Return != "/portal/tokens" {
				t.Fatalf("Finish = %+v, want %+v and return /portal/tokens", res, want)
			}
		})
	}
	if logs := r.log.String(); strings.Contains(logs, "portal-secret") || !strings.Contains(logs, "user=alice") {
		t.Errorf("log %q: want the sign-in of alice and no secret", logs)
	}
}

// TestNoRequiredGroup: without required_group, a user without groups or with a groups claim
// this site cannot read signs in.
func TestNoRequiredGroup(t *testing.T) {
	idp := startIdP(t)
	c := config("portal")
	c.RequiredGroup = ""
	r := startRP(t, idp, c, "portal-secret", nil, nil)
	for _, user := range []string{"bob", "dave"} {
		b := r.browser(t)
		res := r.callback(t, b, r.signIn(t, b, user, user+"-pw", false))
		if res.Status != http.StatusOK || res.Identity.User != user || res.Identity.Groups != nil {
			t.Errorf("Finish(%s) = %+v, want %s signed in without groups", user, res, user)
		}
	}
}

func TestPublicClient(t *testing.T) {
	idp := startIdP(t)
	r := startRP(t, idp, config("portal-public"), "", nil, nil)
	b := r.browser(t)
	if res := r.callback(t, b, r.signIn(t, b, "alice", "alice-pw", false)); res.Status != http.StatusOK || res.Identity.User != "alice" {
		t.Fatalf("Finish with a public client (PKCE only) = %+v, want alice signed in", res)
	}
}

// TestRefused: every callback that must not sign anyone in, and the sentence the user reads.
func TestRefused(t *testing.T) {
	idp := startIdP(t)
	r := startRP(t, idp, config("portal"), "portal-secret", nil, nil)

	for _, tt := range []struct {
		name     string
		user     string
		password string
		deny     bool
		callback func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL)
		want     error
		wantText string
	}{
		{name: "required group missing", user: "bob", want: oidclogin.ErrGroup},
		{name: "groups claim not strings", user: "dave", want: oidclogin.ErrGroup},
		{name: "user name not valid", user: "bad\x01name", password: "pw", want: oidclogin.ErrUser},
		{name: "wrong state", user: "alice", want: oidclogin.ErrFlow,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				q := u.Query()
				q.Set("state", q.Get("state")+"x")
				u.RawQuery = q.Encode()
				return b, u
			}},
		{name: "state reused", user: "alice", want: oidclogin.ErrFlow,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				if res := r.callback(t, b, u); res.Status != http.StatusOK {
					t.Fatalf("first callback = %+v, want a sign-in", res)
				}
				return b, u
			}},
		{name: "flow expired", user: "alice", want: oidclogin.ErrFlow,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				r.clock.Advance(oidclogin.FlowLifetime + time.Second)
				t.Cleanup(func() { r.clock.Advance(-oidclogin.FlowLifetime - time.Second) })
				return b, u
			}},
		{name: "authorization code expired", user: "alice", want: oidclogin.ErrExchange,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				idp.Advance(time.Minute + time.Second)
				return b, u
			}},
		{name: "wrong code", user: "alice", want: oidclogin.ErrExchange,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				q := u.Query()
				q.Set("code", "not-a-code")
				u.RawQuery = q.Encode()
				return b, u
			}},
		{name: "callback in another browser", user: "alice", want: oidclogin.ErrFlow,
			callback: func(t *testing.T, b *http.Client, u *url.URL) (*http.Client, *url.URL) {
				return r.browser(t), u
			}},
		{name: "provider error", user: "alice", deny: true, want: oidclogin.ErrDenied, wantText: "(access_denied)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := r.browser(t)
			if tt.password == "" {
				tt.password = tt.user + "-pw"
			}
			u := r.signIn(t, b, tt.user, tt.password, tt.deny)
			code := u.Query().Get("code")
			if tt.callback != nil {
				b, u = tt.callback(t, b, u)
			}
			res := r.callback(t, b, u)
			if res.Status != http.StatusForbidden || !strings.HasPrefix(res.Error, tt.want.Error()) || !strings.Contains(res.Error, tt.wantText) {
				t.Fatalf("Finish = %+v, want 403 %q", res, tt.want)
			}
			if logs := r.log.String(); code != "" && strings.Contains(logs, code) {
				t.Errorf("log has the authorization code: %s", logs)
			}
		})
	}
}

// TestTokenVerified: ID tokens that the provider issued but this client must not accept.
func TestTokenVerified(t *testing.T) {
	idp := startIdP(t)
	t.Run("audience of another client", func(t *testing.T) {
		idp.AddClient(oidctest.Client{ID: "other-app", Secret: "other-secret"})
		r := startRP(t, idp, config("portal"), "portal-secret", []string{"other-app"}, nil)
		b := r.browser(t)
		res := r.callback(t, b, r.signIn(t, b, "alice", "alice-pw", false))
		if res.Status != http.StatusForbidden || res.Error != oidclogin.ErrToken.Error() {
			t.Fatalf("Finish with a token for other-app = %+v, want %q", res, oidclogin.ErrToken)
		}
		if logs := r.log.String(); !strings.Contains(logs, "audience") {
			t.Errorf("log %q: want the audience named", logs)
		}
	})
	t.Run("expired", func(t *testing.T) {
		r := startRP(t, idp, config("portal-2"), "portal-secret", nil, nil)
		r.clock.Advance(2 * time.Hour) // past the token's hour, the flow's age still 0
		b := r.browser(t)
		res := r.callback(t, b, r.signIn(t, b, "alice", "alice-pw", false))
		if res.Status != http.StatusForbidden || res.Error != oidclogin.ErrToken.Error() {
			t.Fatalf("Finish with an expired ID token = %+v, want %q", res, oidclogin.ErrToken)
		}
	})
	t.Run("nonce of another flow", func(t *testing.T) {
		r := startRP(t, idp, config("portal-3"), "portal-secret", nil, &nonceSwap{})
		b := r.browser(t)
		res := r.callback(t, b, r.signIn(t, b, "alice", "alice-pw", false))
		if res.Status != http.StatusForbidden || res.Error != oidclogin.ErrToken.Error() {
			t.Fatalf("Finish with another nonce = %+v, want %q", res, oidclogin.ErrToken)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		r := startRP(t, idp, config("portal-4"), "portal-secret", nil, nil)
		idp.AddClient(oidctest.Client{ID: "portal-4", Secret: "changed", RedirectURIs: []string{r.srv.URL + callbackPath}})
		b := r.browser(t)
		res := r.callback(t, b, r.signIn(t, b, "alice", "alice-pw", false))
		if res.Status != http.StatusForbidden || res.Error != oidclogin.ErrExchange.Error() {
			t.Fatalf("Finish with a wrong client secret = %+v, want %q", res, oidclogin.ErrExchange)
		}
		if logs := r.log.String(); strings.Contains(logs, "portal-secret") {
			t.Errorf("log has the client secret: %s", logs)
		}
	})
}

// nonceSwap is a flow store that hands back another nonce than the one Start kept.
type nonceSwap struct{ oidclogin.MemoryFlows }

func (n *nonceSwap) Take(ctx context.Context, state string) (oidclogin.Flow, bool, error) {
	f, ok, err := n.MemoryFlows.Take(ctx, state)
	f.Nonce += "x"
	return f, ok, err
}

func TestStartReturnPath(t *testing.T) {
	idp := startIdP(t)
	r := startRP(t, idp, config("portal"), "portal-secret", nil, nil)
	for _, p := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "tokens", "", "/a\nb"} {
		w := httptest.NewRecorder()
		if err := r.login.Start(w, httptest.NewRequest("GET", "/portal/oidc/start", nil), p); !errors.Is(err, oidclogin.ErrReturn) {
			t.Errorf("Start(return %q) = %v, want ErrReturn", p, err)
		}
		if w.Code != http.StatusOK || w.Header().Get("Location") != "" {
			t.Errorf("Start(return %q) answered %d %q, want nothing written", p, w.Code, w.Header().Get("Location"))
		}
	}
}

func TestNew(t *testing.T) {
	idp := startIdP(t)
	dir := t.TempDir()
	open := filepath.Join(dir, "open-secret")
	if err := os.WriteFile(open, []byte("s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		edit func(*oidclogin.Config, *oidclogin.Options)
		want string
	}{
		{"secret file readable by others", func(c *oidclogin.Config, o *oidclogin.Options) { c.ClientSecretFile = open }, "grants"},
		{"secret file missing", func(c *oidclogin.Config, o *oidclogin.Options) { c.ClientSecretFile = filepath.Join(dir, "none") }, "no such file"},
		{"no flow store", func(c *oidclogin.Config, o *oidclogin.Options) { o.Store = nil }, "no flow store"},
		{"redirect not a URL", func(c *oidclogin.Config, o *oidclogin.Options) { o.RedirectURL = "callback" }, "redirect URL"},
		{"issuer without discovery", func(c *oidclogin.Config, o *oidclogin.Options) { c.Issuer = idp.Issuer() + "/nothing" }, "discovery"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config("portal")
			c.Issuer = idp.Issuer()
			o := oidclogin.Options{Store: &oidclogin.MemoryFlows{}, RedirectURL: "https://portal.example.org" + callbackPath, HTTPClient: idp.HTTPClient()}
			tt.edit(&c, &o)
			if _, err := oidclogin.New(context.Background(), c, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		edit func(*oidclogin.Config)
		want string // "" = valid
	}{
		{"defaults with issuer and client", func(c *oidclogin.Config) {}, ""},
		{"http on 127.0.0.1", func(c *oidclogin.Config) { c.Issuer = "http://127.0.0.1:5556" }, ""},
		{"http on ::1", func(c *oidclogin.Config) { c.Issuer = "http://[::1]:5556/dex" }, ""},
		{"http elsewhere", func(c *oidclogin.Config) { c.Issuer = "http://idp.example.org" }, "http is only"},
		{"http on localhost", func(c *oidclogin.Config) { c.Issuer = "http://localhost:5556" }, "http is only"},
		{"no issuer", func(c *oidclogin.Config) { c.Issuer = "" }, "issuer"},
		{"issuer not a URL", func(c *oidclogin.Config) { c.Issuer = "idp.example.org" }, "issuer"},
		{"issuer with query", func(c *oidclogin.Config) { c.Issuer = "https://idp.example.org/?x=1" }, "issuer"},
		{"no client id", func(c *oidclogin.Config) { c.ClientID = "" }, "client_id"},
		{"client id with space", func(c *oidclogin.Config) { c.ClientID = "a b" }, "client_id"},
		{"relative secret file", func(c *oidclogin.Config) { c.ClientSecretFile = "secret" }, "absolute"},
		{"empty scope", func(c *oidclogin.Config) { c.Scopes = []string{"openid", ""} }, "scopes"},
		{"no username claim", func(c *oidclogin.Config) { c.UsernameClaim = "" }, "username_claim"},
		{"no groups claim", func(c *oidclogin.Config) { c.GroupsClaim = "" }, "groups_claim"},
		{"group with line break", func(c *oidclogin.Config) { c.RequiredGroup = "a\nb" }, "required_group"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := oidclogin.DefaultConfig()
			c.Issuer, c.ClientID = "https://idp.example.org/realms/hpc", "pam-totp-portal"
			tt.edit(&c)
			err := c.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMemoryFlows(t *testing.T) {
	t.Parallel()
	var clk clock
	m := &oidclogin.MemoryFlows{Now: clk.Now}
	ctx := context.Background()
	if err := m.Put(ctx, oidclogin.Flow{State: "old", Created: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, oidclogin.Flow{State: "s", Nonce: "n", Created: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if f, ok, err := m.Take(ctx, "s"); !ok || err != nil || f.Nonce != "n" {
		t.Fatalf("Take(s) = %+v, %v, %v, want the flow", f, ok, err)
	}
	if _, ok, _ := m.Take(ctx, "s"); ok {
		t.Fatalf("second Take(s) found the flow, want it gone")
	}
	clk.Advance(oidclogin.FlowLifetime + time.Second)
	_ = m.Put(ctx, oidclogin.Flow{State: "new", Created: clk.Now()})
	if _, ok, _ := m.Take(ctx, "old"); ok {
		t.Fatalf("Take(old) after FlowLifetime found the flow, want it dropped")
	}
}
