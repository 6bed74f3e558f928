//go:build linux

package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pam-totp/pam-totp/pkg/adminclient"
)

// reserved is the last time step a test may have used a code of (freshStep's step and the
// one after it, for "the next code").
var reserved uint64

// freshStep moves the clock of the registry, node and helper forward to the start of a time
// step no test has used a code of, and returns that instant: each proof, sign-in and login uses
// up one step of a token. The clock only moves forward (it stays ahead of the wall clock when the
// test ends), so that no later step is one used before.
func freshStep(t *testing.T) time.Time {
	t.Helper()
	next := max(clk.Step(30)+1, reserved+1)
	reserved = next + 1
	clk.Set(t, time.Unix(int64(next)*30, 0))
	return clk.Now()
}

// needFirst skips a test that builds on FirstEnrollment when it did not get through.
func (f *fixture) needFirst(t *testing.T) enrolled {
	t.Helper()
	if f.firstUser.name == "" {
		t.Skip("FirstEnrollment did not enroll its user")
	}
	f.firstUser.tab.t = t
	return f.firstUser
}

// testProofs: a second token needs a proof (none, a wrong one refused; a backup code taken);
// removing a token needs one; a used backup code is refused.
func (f *fixture) testProofs(t *testing.T) {
	u := f.needFirst(t)
	b := u.tab
	now := freshStep(t)

	b.open("/portal/tokens/new")
	if !b.has("form#add-token-form input#token-proof") {
		t.Fatal("the add-token form of a user with a token asks for no proof (input#token-proof)")
	}
	before := f.r.state(t, u.name)
	status, body := f.post(t, b.session(), "/portal/tokens/new", url.Values{"csrf": {csrf(t, b)}, "name": {"laptop"}})
	if status == http.StatusSeeOther || strings.Contains(body, "secret-base32") {
		t.Errorf("a second token without a proof: answered %d, want a refusal", status)
	}
	wantUnchanged(t, f, "a second token without a proof", before, u.name)

	b.open("/portal/tokens/new")
	b.submit("a second token with a wrong proof", "#token-name", "laptop", "#token-proof", wrongCode(t, u.tok, now))
	if b.text("p#error") == "" || strings.HasPrefix(strings.TrimPrefix(b.location(), b.base), "/portal/tokens/pending/") {
		t.Errorf("a second token with a wrong proof: page %s, p#error %q; want a refusal", b.location(), b.text("p#error"))
	}
	wantUnchanged(t, f, "a second token with a wrong proof", before, u.name)

	// A backup code is a proof: the second token, verified; no new backup codes with it.
	p2 := f.addToken(t, b, "laptop", u.backup[0])
	submitted := time.Now()
	verify(b, p2.code(t, now))
	wantVerified(b, "the second token's code", p2.id)
	t.Logf("second token: verified code submitted -> active on 1 of 1: %v", waitActive(t, b, submitted).Round(time.Millisecond))
	if b.has("section#backup-codes") {
		t.Error("the second token's page shows new backup codes; they come only with the first token")
	}

	// Removing needs a proof: the used backup code is refused, a current code of the other token
	// is taken.
	b.open("/portal/tokens")
	row := fmt.Sprintf(`tr.token[data-id=%q]`, p2.id)
	if !b.has(row + " form.remove") {
		t.Fatalf("no form.remove in the row of token %s", p2.id)
	}
	before = f.r.state(t, u.name)
	b.submit("remove with a used backup code", row+` form.remove input[name=proof]`, u.backup[0])
	if b.text("p#error") == "" {
		t.Errorf("removing with a used backup code: no p#error (page %s)", b.location())
	}
	wantUnchanged(t, f, "removing with a used backup code", before, u.name)
	b.open("/portal/tokens")
	b.submit("remove with a code of the first token", row+` form.remove input[name=proof]`, u.tok.code(t, now))
	b.open("/portal/tokens")
	if b.has(row) {
		t.Errorf("token %s is still listed after its removal (error %q)", p2.id, b.text("p#error"))
	}
	toks, err := f.r.admin.Tokens(bg(t), u.name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if tk.ID == p2.id && tk.State == "active" {
			t.Errorf("token %s is still active at the registry after its removal", p2.id)
		}
	}
}

// wantUnchanged fails the test when the users' tokens differ from before.
func wantUnchanged(t *testing.T, f *fixture, what, before string, users ...string) {
	t.Helper()
	if got := f.r.state(t, users...); got != before {
		t.Errorf("%s changed the registry:\nbefore %s\nafter  %s", what, before, got)
	}
}

// testSignInByCode: a current code signs in; a used backup code does not.
func (f *fixture) testSignInByCode(t *testing.T) {
	u := f.needFirst(t)
	now := freshStep(t)
	b := newTab(t, f.chrome, f.r.url)
	b.open("/portal/signin")
	b.submit("sign in with a used backup code", "#code-user", u.name, "#code-code", u.backup[0])
	if b.session() != "" || b.text("p#error") == "" {
		t.Errorf("a used backup code signed in (page %s, error %q)", b.location(), b.text("p#error"))
	}
	b.open("/portal/signin")
	b.submit("sign in with a code", "#code-user", u.name, "#code-code", u.tok.code(t, now))
	b.wantPath("sign in with a code", "/portal/tokens")
	if n := len(b.texts("tr.token")); n != 1 {
		t.Errorf("signed in by code, the list shows %d tokens, want 1", n)
	}
	b.load("sign out", chromedp.Click(chromedp.CSS(`form#signout [type=submit], form#signout button`)))
	b.open("/portal/tokens")
	b.wantPath("/portal/tokens after signing out", "/portal/signin")
}

// testKeyboardOnly: the sign-in, add-token and verify forms completed with Tab, typing and Enter.
func (f *fixture) testKeyboardOnly(t *testing.T) {
	user, addr := f.user(t)
	b := newTab(t, f.chrome, f.r.url)
	b.open("/portal/signin")
	b.keyboardTo("mail-user")
	b.keyboardSubmit("keyboard: ask for a mailed code", user)
	code := mailedCode.FindString(f.waitMail(t, addr, 1))
	b.keyboardTo("mailcode-code")
	b.keyboardSubmit("keyboard: type the mailed code", code)
	b.wantPath("keyboard: signed in", "/portal/tokens")
	b.keyboardTo("add-token")
	b.load("keyboard: Enter on Add a token", chromedp.KeyEvent("\r"))
	b.wantPath("keyboard: add a token", "/portal/tokens/new")
	b.keyboardTo("token-name")
	b.keyboardSubmit("keyboard: name the token", "phone")
	p := readPending(t, b)
	now := freshStep(t)
	b.keyboardTo("verify-code")
	b.keyboardSubmit("keyboard: the first code", p.code(t, now))
	wantVerified(b, "keyboard: verified", p.id)

	// Leaving the backup codes unconfirmed asks first (beforeunload; the tab answers "leave").
	asked := b.dialogCount()
	b.open("/portal/tokens")
	if b.dialogCount() != asked+1 {
		t.Errorf("leaving the backup codes without \"I have saved these codes\" asked %d times, want once", b.dialogCount()-asked)
	}
}

// testRefused: requests a browser of the user would not send are refused, and change nothing.
func (f *fixture) testRefused(t *testing.T) {
	a := f.needFirst(t)
	// User B, signed in by mail before the administrator gives B a token.
	bName, bAddr := f.user(t)
	bt := newTab(t, f.chrome, f.r.url)
	f.signInByMail(t, bt, bName, bAddr)
	bTok, err := f.r.admin.AddToken(bg(t), bName, adminclient.NewToken{Name: "bphone", Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"})
	if err != nil {
		t.Fatal(err)
	}
	bt.open("/portal/tokens")
	a.tab.open("/portal/tokens")
	aCookie, aCSRF := a.tab.session(), csrf(t, a.tab)
	bCookie, bCSRF := bt.session(), csrf(t, bt)
	before := f.r.state(t, a.name, bName)

	aRename := "/portal/tokens/" + a.tok.id + "/rename"
	bRename := "/portal/tokens/" + bTok.ID + "/rename"
	for _, c := range []struct {
		name         string
		cookie, path string
		form         url.Values
		want         []int
	}{
		{"no CSRF token", aCookie, aRename, url.Values{"name": {"x"}}, []int{403}},
		{"a wrong CSRF token", aCookie, aRename, url.Values{"name": {"x"}, "csrf": {bCSRF}}, []int{403}},
		{"another user's cookie", bCookie, aRename, url.Values{"name": {"x"}, "csrf": {bCSRF}}, []int{403, 404}},
		{"another user's cookie with the user's CSRF token", bCookie, aRename, url.Values{"name": {"x"}, "csrf": {aCSRF}}, []int{403, 404}},
		{"another user's token id", aCookie, bRename, url.Values{"name": {"x"}, "csrf": {aCSRF}}, []int{403, 404}},
		{"removing another user's token", aCookie, "/portal/tokens/" + bTok.ID + "/remove",
			url.Values{"proof": {a.backup[1]}, "csrf": {aCSRF}}, []int{403, 404}},
		{"no session", "", aRename, url.Values{"name": {"x"}, "csrf": {aCSRF}}, []int{403, 303}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			status, _ := f.post(t, c.cookie, c.path, c.form)
			ok := false
			for _, w := range c.want {
				ok = ok || status == w
			}
			if !ok {
				t.Errorf("POST %s with %s: status %d, want one of %v", c.path, c.name, status, c.want)
			}
			wantUnchanged(t, f, c.name, before, a.name, bName)
		})
	}

	// The control: the same request with the user's own cookie and CSRF token renames the token,
	// so the refusals above are the portal's checks and not a malformed request.
	if status, _ := f.post(t, aCookie, aRename, url.Values{"name": {"renamed"}, "csrf": {aCSRF}}); status != http.StatusSeeOther && status != http.StatusOK {
		t.Errorf("POST %s with the user's cookie and CSRF token: status %d, want 303", aRename, status)
	}
	toks, err := f.r.admin.Tokens(bg(t), a.name)
	if err != nil {
		t.Fatal(err)
	}
	renamed := false
	for _, tk := range toks {
		renamed = renamed || tk.ID == a.tok.id && tk.Name == "renamed"
	}
	if !renamed {
		t.Errorf("the user's own rename did not rename token %s: %+v", a.tok.id, toks)
	}
	before = f.r.state(t, a.name, bName)

	// A used sign-in code: the code A signed in with, typed again on the form a new request
	// shows. (That request replaces the code, so this is the browser's view of an old code;
	// pkg/registry's TestPortalFirstTokenByMail replays a code on its own.)
	t.Run("used_sign-in_code", func(t *testing.T) {
		r := newTab(t, f.chrome, f.r.url)
		r.open("/portal/signin")
		r.submit("ask for a mailed code", "#mail-user", a.name)
		r.submit("type the used code", "#mailcode-code", a.signInCode)
		if r.session() != "" || strings.HasSuffix(r.location(), "/portal/tokens") {
			t.Errorf("a replayed sign-in code signed in (page %s)", r.location())
		}
		if r.text("p#error") == "" {
			t.Error("a replayed sign-in code: no p#error")
		}
		wantUnchanged(t, f, "a replayed sign-in code", before, a.name, bName)
	})
}

// testExpiredSession: a session unused for longer than session_idle ends: the page asks to
// sign in again, and a POST with its cookie is refused.
func (f *fixture) testExpiredSession(t *testing.T) {
	a := f.needFirst(t)
	a.tab.open("/portal/tokens")
	cookie, token := a.tab.session(), csrf(t, a.tab)
	before := f.r.state(t, a.name)
	clk.Set(t, clk.Now().Add(16*time.Minute)) // the clock moves only forward (freshStep)
	status, _ := f.post(t, cookie, "/portal/tokens/"+a.tok.id+"/rename", url.Values{"name": {"x"}, "csrf": {token}})
	if status != http.StatusForbidden && status != http.StatusSeeOther {
		t.Errorf("POST with a session idle for 16 minutes: status %d, want 403 or 303 to sign in", status)
	}
	wantUnchanged(t, f, "a POST with an expired session", before, a.name)
	a.tab.open("/portal/tokens")
	a.tab.wantPath("/portal/tokens with an expired session", "/portal/signin")
}
