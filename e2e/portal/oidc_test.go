//go:build linux

package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin/oidctest"
)

// oidcClient is the portal's client id at the test provider.
const oidcClient = "pam-totp-portal"

// idp is the test OpenID provider of the package (one per TestPortal).
var idp *oidctest.Provider

// startProvider starts the OpenID provider (pkg/portal/oidclogin/oidctest, plain http on the
// loopback) with the portal as a confidential client, and returns the [portal.oidc] lines (its
// secret in a root 0600 file) and the SPKI pins Chromium needs for it (none: it is http).
func startProvider(t *testing.T, redirect string) (conf string, spkis []string) {
	t.Helper()
	secret := pamtest.RandName(32)
	var err error
	idp, err = oidctest.Start(oidctest.Options{
		Clients:      []oidctest.Client{{ID: oidcClient, Secret: secret, RedirectURIs: []string{redirect}}},
		CodeLifetime: time.Minute,
	})
	if err != nil {
		t.Fatalf("start the test OpenID provider: %v", err)
	}
	t.Cleanup(idp.Close)
	file := filepath.Join(pamtest.PrivateDir(t), "oidc-client-secret")
	pamtest.WriteFile(t, file, secret+"\n", 0o600)
	return fmt.Sprintf("issuer = %q\nclient_id = %q\nclient_secret_file = %q\nscopes = [\"openid\", \"profile\"]\n"+
		"username_claim = \"preferred_username\"\ngroups_claim = \"groups\"\nrequired_group = \"hpc-users\"\n",
		idp.Issuer(), oidcClient, file), nil
}

// oidcUser adds a user known to the registry and to the provider (in the required group) and
// returns the name and password.
func (f *fixture) oidcUser(t *testing.T, groups ...string) (name, password string) {
	t.Helper()
	name, _ = f.user(t)
	password = pamtest.RandName(16)
	idp.AddUser(oidctest.User{Name: name, Password: password, Groups: groups})
	return name, password
}

// callbackURL starts a sign-in in the tab (a#signin-oidc: the portal keeps the flow and binds it
// to the browser with its state cookie), signs in at the provider's login form as a script, and
// returns the URL the provider sends the browser back to (the portal's callback with code and
// state), without following it.
func (f *fixture) callbackURL(t *testing.T, b *tab, user, password string) *url.URL {
	t.Helper()
	b.open("/portal/signin")
	b.click("follow the OpenID Connect sign-in", "a#signin-oidc")
	next := b.location()
	c := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 10 {
		u, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(next, f.r.url+"/portal/oidc/callback") {
			return u
		}
		var resp *http.Response
		if u.Path == "/login" {
			resp, err = c.PostForm(next, url.Values{"id": {u.Query().Get("id")}, "username": {user}, "password": {password}})
		} else {
			resp, err = c.Get(next)
		}
		if err != nil {
			t.Fatalf("sign-in at the provider: %v", err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("sign-in at the provider: %s answered %d without a redirect", next, resp.StatusCode)
		}
		next = loc.String()
	}
	t.Fatalf("sign-in at the provider: no redirect to the portal's callback")
	return nil
}

// oidcSignIn signs the tab in through a#signin-oidc and the provider's login form.
func (f *fixture) oidcSignIn(t *testing.T, b *tab, user, password string) {
	t.Helper()
	b.open("/portal/signin")
	if got := b.attr("a#signin-oidc", "href"); got != "/portal/oidc/start" {
		t.Errorf("a#signin-oidc href = %q, want /portal/oidc/start", got)
	}
	b.click("follow the OpenID Connect sign-in", "a#signin-oidc")
	if !strings.HasPrefix(b.location(), idp.Issuer()+"/login") {
		t.Fatalf("the OIDC sign-in led to %s, not the provider's login page", b.location())
	}
	b.submit("sign in at the provider", "#username", user, "#password", password)
	// The callback answers with a page that moves on (meta refresh) to /portal/tokens.
	waitFor(t, 10*time.Second, "the portal's token page after the provider's sign-in", func() (bool, error) {
		return b.location() == f.r.url+"/portal/tokens", nil
	})
	b.checkHeaders()
	if b.session() == "" {
		t.Fatal("signed in through the provider, but no session cookie")
	}
}

// testOIDC: sign-in through the provider's login form in the browser; a callback with a wrong
// state and one with an expired code are refused, with no session and nothing changed.
func (f *fixture) testOIDC(t *testing.T) {
	user, password := f.oidcUser(t, "hpc-users")
	b := newTab(t, f.chrome, f.r.url)
	f.oidcSignIn(t, b, user, password)
	if !b.has("a#add-token") {
		t.Errorf("signed in through the provider: no a#add-token on %s", b.location())
	}

	// The admin overview: "not found" for a user outside admin_group, the nodes and users for
	// one in it.
	b.open("/portal/admin")
	if b.has("table#admin-nodes") || b.has("table#admin-users") {
		t.Errorf("a user outside admin_group sees the admin overview")
	}
	t.Run("admin_overview", func(t *testing.T) {
		admin, pw := f.oidcUser(t, "hpc-users", "hpc-admins")
		a := newTab(t, f.chrome, f.r.url)
		f.oidcSignIn(t, a, admin, pw)
		a.open("/portal/admin")
		if nodes := a.text("table#admin-nodes"); !strings.Contains(nodes, f.n.name) {
			t.Errorf("table#admin-nodes does not list the node %s: %q", f.n.name, nodes)
		}
		if users := a.text("table#admin-users"); !strings.Contains(users, user) {
			t.Errorf("table#admin-users does not list the user %s", user)
		}
		if !a.has("table#admin-audit") {
			t.Error("no table#admin-audit")
		}
	})

	// Another user who is known to the provider but not in the required group gets no session.
	t.Run("not_in_required_group", func(t *testing.T) {
		other, pw := f.oidcUser(t, "students")
		r := newTab(t, f.chrome, f.r.url)
		cb := f.callbackURL(t, r, other, pw)
		r.load("callback for a user outside the group", chromedp.Navigate(cb.String()))
		if r.session() != "" || r.text("p#error") == "" {
			t.Errorf("a user outside required_group signed in (page %s, error %q)", r.location(), r.text("p#error"))
		}
	})

	for _, c := range []struct {
		name  string
		spoil func(cb *url.URL) // makes the callback one the portal must refuse
	}{
		{"wrong_state", func(cb *url.URL) {
			q := cb.Query()
			q.Set("state", "x"+q.Get("state"))
			cb.RawQuery = q.Encode()
		}},
		{"expired_code", func(*url.URL) { idp.Advance(2 * time.Minute) }}, // a code lives one minute
	} {
		t.Run(c.name, func(t *testing.T) {
			before := f.r.state(t, user)
			r := newTab(t, f.chrome, f.r.url)
			cb := f.callbackURL(t, r, user, password)
			c.spoil(cb)
			r.load("callback with a "+c.name, chromedp.Navigate(cb.String()))
			if r.session() != "" || r.text("p#error") == "" {
				t.Errorf("a callback with a %s: page %s, p#error %q, session cookie %v; want a refusal",
					c.name, r.location(), r.text("p#error"), r.session() != "")
			}
			wantUnchanged(t, f, "a callback with a "+c.name, before, user)
		})
	}
}
