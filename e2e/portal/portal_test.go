//go:build linux

package portal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/mail/mailtest"
)

// fixture is what every test of the package shares: one registry with the portal, its node, the
// mail sink and the browser.
type fixture struct {
	r      *registry
	n      *node
	sink   *mailtest.Relay
	chrome context.Context
	http   *http.Client // trusts the registry's CA, follows no redirect
	top    *testing.T   // TestPortal's: a tab that outlives one subtest lives as long

	// firstUser is the user FirstEnrollment enrolled, signed in in its tab; later tests use it.
	firstUser enrolled
}

// enrolled is a user with an active token enrolled through the portal.
type enrolled struct {
	name, addr string
	tok        pending
	backup     []string
	signInCode string // the mailed code the user signed in with
	tab        *tab
}

// portalConf is the registry's [portal] section; oidc is its [portal.oidc] lines ("" leaves
// OpenID Connect off).
func portalConf(oidc string) string {
	methods, admin := `["mail", "code"]`, ""
	if oidc != "" {
		methods, admin = `["mail", "code", "oidc"]`, `admin_group = "hpc-admins"`
		oidc = "\n[portal.oidc]\n" + oidc
	}
	return fmt.Sprintf(`[portal]
enabled = true
site_name = "pam-totp test site"
contact = "helpdesk@site.test"
sign_in = %s
session_idle = "15m"
session_max = "8h"
%s
%s`, methods, admin, oidc)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{sink: mailtest.Start(t)}
	port := pamtest.FreePort(t)
	oidc, spkis := startProvider(t, fmt.Sprintf("https://127.0.0.1:%d/portal/oidc/callback", port))
	f.r = startRegistry(t, port, f.sink.Addr, portalConf(oidc))
	f.n = startNode(t, f.r)
	f.n.waitRev(t, f.r.rev(t))
	f.chrome = startChromium(t, append(spkis, f.r.tls.spki)...)
	pem, err := os.ReadFile(f.r.tls.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	f.http = &http.Client{Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

// TestPortal runs the browser tests on one registry, node and browser.
func TestPortal(t *testing.T) {
	needRoot(t)
	start := time.Now()
	f := newFixture(t)
	f.top = t
	t.Logf("registry, node, mail sink and Chromium up in %v", time.Since(start).Round(time.Millisecond))
	t.Run("FirstEnrollment", f.testFirstEnrollment)
	t.Run("Proofs", f.testProofs)
	t.Run("SignInByCode", f.testSignInByCode)
	t.Run("KeyboardOnly", f.testKeyboardOnly)
	t.Run("OIDC", f.testOIDC)
	t.Run("Refused", f.testRefused)
	// Last: it moves the clock past the sessions' idle time.
	t.Run("ExpiredSession", f.testExpiredSession)
}

// user adds a local user (for the libpam login) known to the registry with a mail address.
func (f *fixture) user(t *testing.T) (name, addr string) {
	t.Helper()
	name = pamtest.AddUser(t, userPrefix)
	addr = name + "@users.test"
	if _, err := f.r.admin.AddUser(bg(t), adminclient.NewUser{Name: name, Mail: addr, Scopes: []string{scope}}); err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	return name, addr
}

// mailedCode is a one-time code of the form xxxx-xxxx-xxxx-xxxx (pkg/backupcode's).
var mailedCode = regexp.MustCompile(`\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b`)

// waitMail waits for the n-th mail to addr and returns it.
func (f *fixture) waitMail(t *testing.T, addr string, n int) string {
	t.Helper()
	var msgs []string
	waitFor(t, 10*time.Second, fmt.Sprintf("mail %d to %s", n, addr), func() (bool, error) {
		msgs = f.sink.MessagesTo(t, addr)
		return len(msgs) >= n, nil
	})
	return msgs[n-1]
}

// signInByMail signs the tab in as user with the code mailed to addr (the mails to addr so far:
// before) and returns the code.
func (f *fixture) signInByMail(t *testing.T, b *tab, user, addr string) string {
	t.Helper()
	before := len(f.sink.MessagesTo(t, addr))
	b.open("/portal/signin")
	b.submit("sign in by mail", "#mail-user", user)
	if !b.has("form#signin-mailcode") {
		t.Fatalf("after asking for a mailed code the page has no form#signin-mailcode (%s): %q", b.location(), b.text("main"))
	}
	if got := b.attr("#mailcode-user", "value"); got != user {
		t.Errorf("#mailcode-user is prefilled with %q, want %q", got, user)
	}
	msg := f.waitMail(t, addr, before+1)
	code := mailedCode.FindString(msg)
	if code == "" {
		t.Fatalf("no one-time code in the sign-in mail:\n%s", msg)
	}
	b.submit("enter the mailed code", "#mailcode-code", code)
	b.wantPath("sign in with the mailed code", "/portal/tokens")
	return code
}

// pending is a token being enrolled, as the enrollment page shows it.
type pending struct {
	id  string
	uri string
	key *otp.Key
}

// code is the token's code at the instant.
func (p pending) code(t *testing.T, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(p.key.Secret(), at, totp.ValidateOpts{Period: uint(p.key.Period()),
		Digits: p.key.Digits(), Algorithm: p.key.Algorithm()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addToken fills the add-token form (with proof when it is not "") and reads the secret from
// the enrollment page.
func (f *fixture) addToken(t *testing.T, b *tab, name, proof string) pending {
	t.Helper()
	b.open("/portal/tokens")
	b.click("follow Add a token", "a#add-token")
	b.wantPath("Add a token", "/portal/tokens/new")
	if proof == "" {
		b.submit("add a token", "#token-name", name)
	} else {
		b.submit("add a token", "#token-name", name, "#token-proof", proof)
	}
	return readPending(t, b)
}

// readPending reads the enrollment page: the URI of the link, the secret in base32 and hex.
func readPending(t *testing.T, b *tab) pending {
	t.Helper()
	loc := strings.TrimPrefix(b.location(), b.base)
	id, ok := strings.CutPrefix(loc, "/portal/tokens/pending/")
	if !ok {
		t.Fatalf("adding a token led to %s, not the enrollment page (error: %q)", loc, b.text("#error"))
	}
	p := pending{id: id, uri: b.attr("a#otpauth", "href")}
	var err error
	if p.key, err = otp.NewKeyFromURL(p.uri); err != nil {
		t.Fatalf("the link a#otpauth is no otpauth URI: %v", err)
	}
	groups := strings.Fields(b.text("code#secret-base32"))
	for _, g := range groups[:len(groups)-1] {
		if len(g) != 4 {
			t.Errorf("code#secret-base32 is not in groups of 4: %q", groups)
			break
		}
	}
	if got := strings.Join(groups, ""); !strings.EqualFold(got, p.key.Secret()) {
		t.Errorf("code#secret-base32 (%d characters) is not the secret of the otpauth link", len(got))
	}
	if hx := strings.ReplaceAll(b.text("code#secret-hex"), " ", ""); hx == "" {
		t.Error("code#secret-hex is empty")
	}
	for _, copyTarget := range []string{"secret-base32", "secret-hex"} {
		if !b.has(fmt.Sprintf(`button.copy[data-copy=%q]`, copyTarget)) {
			t.Errorf("no copy button for #%s", copyTarget)
		}
	}
	if b.text("p#expires") == "" {
		t.Error("p#expires is empty")
	}
	return p
}

// verify types a code into the enrollment page's form.
func verify(b *tab, code string) {
	b.t.Helper()
	b.submit("verify a code", "#verify-code", code)
}

// waitActive waits until the active page says "active on N of N login nodes" (N the registry's
// node count, here 1) and returns how long that took from since.
func waitActive(t *testing.T, b *tab, since time.Time) time.Duration {
	t.Helper()
	var last string
	waitFor(t, 20*time.Second, `"active on 1 of 1 login nodes"`, func() (bool, error) {
		last = b.text("p#nodes")
		return b.attr("p#nodes", "data-active") == "1" && b.attr("p#nodes", "data-total") == "1" &&
			strings.Contains(last, "active on 1 of 1 login nodes"), nil
	})
	return time.Since(since)
}

// testFirstEnrollment: mailed code, add a token, wrong codes, the right code, the live node
// count, backup codes downloaded, a login on the node.
func (f *fixture) testFirstEnrollment(t *testing.T) {
	user, addr := f.user(t)
	// The tab stays signed in for the later tests (each sets b.t to its own t).
	b := newTab(f.top, f.chrome, f.r.url)
	b.t = t
	b.open("/portal/")
	b.wantPath("/portal/ signed out", "/portal/signin")
	for _, sel := range []string{"main#content", "h1", "footer#contact", "form#signin-mail", "form#signin-code"} {
		if !b.has(sel) {
			t.Errorf("the sign-in page has no %s", sel)
		}
	}
	if h1 := b.text("h1"); !strings.Contains(h1, "pam-totp test site") {
		t.Errorf("h1 = %q, want the site name", h1)
	}
	if c := b.text("footer#contact"); !strings.Contains(c, "helpdesk@site.test") {
		t.Errorf("footer#contact = %q, want the contact", c)
	}
	signIn := f.signInByMail(t, b, user, addr)
	if b.session() == "" {
		t.Fatalf("signed in, but the browser holds no %s cookie", sessionCookie)
	}
	if n := len(b.texts("tr.token")); n != 0 {
		t.Errorf("a new user's token list has %d rows", n)
	}

	p := f.addToken(t, b, "phone", "")
	t.Run("QRDecodes", func(t *testing.T) { checkQR(t, b, p.uri) })

	// Wrong codes, at the start of a step so that the step does not change under the test.
	now := freshStep(t)
	state := f.r.state(t, user)
	wrong := wrongCode(t, p, now)
	verify(b, wrong)
	// The answer to the POST is the enrollment page again, with the reason.
	b.wantPath("a wrong code", "/portal/tokens/pending/"+p.id, "/portal/tokens/pending/"+p.id+"/verify")
	if e := b.text("p#error"); e == "" || !strings.Contains(strings.ToLower(e), "not right") {
		t.Errorf("a wrong code: p#error = %q, want the CLI's \"That code is not right\"", e)
	}
	// A code of 2 minutes ago (a phone clock behind; one ahead would burn the steps up to its
	// own, and the right code would have to wait for them to pass).
	behind := p.code(t, now.Add(-4*time.Duration(p.key.Period())*time.Second))
	verify(b, behind)
	if e := b.text("p#error"); !strings.Contains(e, "another time") || !strings.Contains(e, "behind") {
		t.Errorf("a code of 2 minutes ago: p#error = %q, want the clock hint (\"belongs to another time ... behind\")", e)
	}
	if b.attr("p#error", "role") != "alert" {
		t.Error(`p#error has no role="alert"`)
	}
	if got := f.r.state(t, user); got != state {
		t.Errorf("wrong codes changed the user's tokens:\nbefore %s\nafter  %s", state, got)
	}

	// The right code: "verified", then the live count reaches 1 of 1.
	right := p.code(t, now)
	submitted := time.Now()
	verify(b, right)
	wantVerified(b, "the right code", p.id)
	if v := b.text("p#verified"); !strings.Contains(v, "Security code successfully verified") {
		t.Errorf("p#verified = %q", v)
	}
	onNode := time.Since(submitted) // an upper bound: the node is looked at from here on
	if st := f.n.tokenState(user, p.id); st != "active" {
		onNode = time.Since(submitted) + waitFor(t, 10*time.Second, "the token active on the node", func() (bool, error) {
			return f.n.tokenState(user, p.id) == "active", nil
		})
	}
	took := waitActive(t, b, submitted)
	t.Logf("verified code submitted -> token active in the node's tokens.db: within %v; "+
		"\"active on 1 of 1 login nodes\" shown: %v (portal.js asks for the count at once, then every 250 ms)",
		onNode.Round(time.Millisecond), took.Round(time.Millisecond))
	shootAs(b, "verified")

	// Backup codes: shown once, downloaded as a file with the same codes.
	codes := b.texts("section#backup-codes ol#backup-code-list li")
	if len(codes) < 5 {
		t.Fatalf("the first token's page shows %d backup codes: %q", len(codes), codes)
	}
	if got := b.attr("a#download-backup", "download"); got != "backup-codes.txt" {
		t.Errorf("a#download-backup download=%q", got)
	}
	if !b.has("button#print-backup") || !b.has("form#backup-saved input#backup-saved-check[required]") {
		t.Error("no print button or no required \"I have saved these codes\" checkbox")
	}
	file := strings.Fields(b.download("a#download-backup", "backup-codes.txt"))
	if strings.Join(file, "\n") != strings.Join(codes, "\n") {
		t.Errorf("the downloaded file holds %d codes that are not the page's %d", len(file), len(codes))
	}
	b.do("tick I have saved these codes", chromedp.Click(chromedp.CSS("#backup-saved-check")))
	asked := b.dialogCount()
	b.load("confirm the backup codes", chromedp.Click(chromedp.CSS(`form#backup-saved [type=submit], form#backup-saved button`)))
	b.wantPath("after confirming the backup codes", "/portal/tokens")
	if b.dialogCount() != asked {
		t.Error("leaving the backup codes through \"I have saved these codes\" asked for a confirmation")
	}
	rows := b.texts("tr.token td.state")
	if len(rows) != 1 {
		t.Fatalf("the token list has %d rows after the first token, want 1", len(rows))
	}
	if n := b.text("tr.token td.nodes"); !strings.Contains(n, "active on 1 of 1 login nodes") {
		t.Errorf("td.nodes = %q", n)
	}

	// A login on the node with the next step's code (the enrollment used this step's).
	res := f.n.login(user, p.code(t, now.Add(time.Duration(p.key.Period())*time.Second)))
	res.Want(t, "libpam login on the node with the token enrolled in the browser", pamtest.Success, -1)
	f.firstUser = enrolled{name: user, addr: addr, tok: p, backup: codes, signInCode: signIn, tab: b}

	// No mail holds the secret, the URI or a code.
	for _, msg := range f.sink.MessagesTo(t, addr) {
		low := strings.ToLower(msg)
		for what, s := range map[string]string{"secret": p.key.Secret(), "otpauth URI": "otpauth:", "backup code": codes[0],
			"verified code": right} {
			if strings.Contains(low, strings.ToLower(s)) {
				t.Errorf("a mail to the user holds the %s:\n%s", what, msg)
			}
		}
	}
}

// wantVerified fails the test unless the tab shows the verified page of token id: at
// /portal/tokens/ID/active, or as the answer to the code's POST (which may show the backup
// codes that no later GET shows again).
func wantVerified(b *tab, what, id string) {
	b.t.Helper()
	b.wantPath(what, "/portal/tokens/"+id+"/active", "/portal/tokens/pending/"+id+"/verify")
	if !b.has("p#verified") {
		b.t.Fatalf("%s: no p#verified (error %q)", what, b.text("#error"))
	}
}

// wrongCode is a code of p's length that matches no step within 10 of now.
func wrongCode(t *testing.T, p pending, now time.Time) string {
	t.Helper()
	used := map[string]bool{}
	for i := -10; i <= 10; i++ {
		used[p.code(t, now.Add(time.Duration(i)*time.Duration(p.key.Period())*time.Second))] = true
	}
	for n := 0; ; n++ {
		c := fmt.Sprintf("%0*d", p.key.Digits().Length(), (123457*n+654321)%1000000)
		if !used[c] {
			return c
		}
	}
}

// checkQR decodes img#qr with zbarimg and compares it with the link's URI.
func checkQR(t *testing.T, b *tab, uri string) {
	src := b.attr("img#qr", "src")
	data, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("img#qr src is not a data:image/png;base64 URI: %.40q", src)
	}
	png, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatalf("img#qr: %v", err)
	}
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		t.Skip("zbarimg is not installed (apt-get install zbar-tools, as contrib/scripts/deps.sh does)")
	}
	file := filepath.Join(pamtest.PrivateDir(t), "qr.png")
	pamtest.WriteFile(t, file, string(png), 0o600)
	out, err := exec.Command(zbar, "--raw", "-q", file).Output()
	if err != nil {
		t.Fatalf("zbarimg on img#qr: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != uri {
		t.Errorf("img#qr decodes to another URI than a#otpauth's (lengths %d and %d)", len(got), len(uri))
	}
}

// post sends a form to the portal as a script would, with the session cookie (when not "")
// and the form's values, and returns the status and body.
func (f *fixture) post(t *testing.T, cookie, path string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.r.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.r.url)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// csrf is the CSRF token of the page the tab shows.
func csrf(t *testing.T, b *tab) string {
	t.Helper()
	v := b.attr(`input[name=csrf]`, "value")
	if v == "" {
		t.Fatalf("the page %s has an empty csrf field", b.location())
	}
	return v
}
