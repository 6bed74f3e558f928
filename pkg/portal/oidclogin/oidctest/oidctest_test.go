package oidctest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin/oidctest"
)

// TestProvider: discovery over TLS, the login page a browser fills in, a wrong password refused
// on the page, the right one sent back to the client's redirect URI with a code.
func TestProvider(t *testing.T) {
	const redirect = "http://127.0.0.1:1/callback"
	idp, err := oidctest.Start(oidctest.Options{
		TLS:     true,
		Users:   []oidctest.User{{Name: "alice", Password: "pw"}},
		Clients: []oidctest.Client{{ID: "app", RedirectURIs: []string{redirect}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	if !strings.HasPrefix(idp.Issuer(), "https://127.0.0.1:") {
		t.Fatalf("Issuer() = %q, want https://127.0.0.1:PORT", idp.Issuer())
	}

	c := idp.HTTPClient()
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := c.Get(idp.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Issuer  string   `json:"issuer"`
		Auth    string   `json:"authorization_endpoint"`
		Methods []string `json:"code_challenge_methods_supported"`
	}
	err = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if err != nil || disc.Issuer != idp.Issuer() || len(disc.Methods) == 0 || disc.Methods[0] != "S256" {
		t.Fatalf("discovery = %+v, %v, want issuer %s and S256", disc, err, idp.Issuer())
	}

	q := url.Values{"client_id": {"app"}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid profile"},
		"state": {"st"}, "nonce": {"n"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	resp, err = c.Get(disc.Auth + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`form id="login"`, `input id="username"`, `input id="password"`, `button id="login"`, `button id="deny"`, `label for="username"`} {
		if !strings.Contains(string(page), want) {
			t.Fatalf("login page lacks %s: %s", want, page)
		}
	}
	id := resp.Request.URL.Query().Get("id")
	login := idp.Issuer() + "/login"

	resp, err = c.PostForm(login, url.Values{"id": {id}, "username": {"alice"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(page), `id="error"`) {
		t.Fatalf("wrong password: %s %s, want 401 with p#error", resp.Status, page)
	}

	resp, err = c.PostForm(login, url.Values{"id": {id}, "username": {"alice"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st" {
		t.Fatalf("sign-in: %s to %v, want the redirect URI with a code and state st", resp.Status, loc)
	}
}
