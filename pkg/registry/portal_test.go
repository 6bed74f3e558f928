package registry

import (
	"context"
	"crypto/tls"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/mail/mailtest"
	"github.com/pam-totp/pam-totp/pkg/portal"
	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin/oidctest"
)

// portalEnv is a registry with the portal on: users ann (alpha, with a mail address) and bob
// (alpha), node n1 in alpha.
type portalEnv struct {
	*enrollEnv
}

func portalConfig(c *Config) {
	c.Portal.Enabled = true
	c.Portal.SiteName = "Test HPC"
	c.Portal.Contact = "help@example.org"
	c.Portal.SignIn = []string{portal.SignInMail, portal.SignInCode}
}

func newPortalEnv(t *testing.T, cfg func(*Config)) *portalEnv {
	t.Helper()
	e := newEnrollEnv(t, func(c *Config) {
		portalConfig(c)
		if cfg != nil {
			cfg(c)
		}
	})
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "bob", "mail": "bob@example.org", "scopes": []string{"alpha"}}, nil)
	return &portalEnv{enrollEnv: e}
}

// browser is a cookie-keeping client of the portal at base.
type browser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func (e *portalEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.newClient(nil)
	c.Jar = jar
	return &browser{t: e.t.(*testing.T), c: c, base: e.ts.URL}
}

// page is an answer of the portal.
type page struct {
	status int
	url    string
	body   string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrf is the page's form token.
func (p page) csrf() string {
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// text is the text of the element with id (its first line of markup, unescaped, no tags).
func (p page) text(id string) string {
	i := strings.Index(p.body, `id="`+id+`"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(p.body[i:], ">")
	k := strings.Index(p.body[i+j:], "</")
	s := p.body[i+j+1 : i+j+k]
	return html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(s, ""))
}

// checkHeaders asserts the headers every portal answer carries.
func checkHeaders(t *testing.T, r *http.Response) {
	t.Helper()
	cache := "no-store"
	if strings.HasPrefix(r.Request.URL.Path, "/portal/static/") {
		cache = "public, max-age=3600"
	}
	for k, want := range map[string]string{"Content-Security-Policy": portal.CSP, "Referrer-Policy": "no-referrer",
		"Cache-Control": cache, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s %s: header %s = %q, want %q", r.Request.Method, r.Request.URL.Path, k, got, want)
		}
	}
	for _, c := range r.Cookies() {
		if c.Name == "__Host-pamtotp-oidc" && c.SameSite == http.SameSiteLaxMode && c.HttpOnly && c.Secure {
			continue // the sign-in flow's cookie comes back on the provider's cross-site redirect
		}
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Errorf("%s %s: cookie %s: HttpOnly %v Secure %v SameSite %v Path %q, want HttpOnly, Secure, Strict, /",
				r.Request.Method, r.Request.URL.Path, c.Name, c.HttpOnly, c.Secure, c.SameSite, c.Path)
		}
	}
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	var hops []*http.Response
	b.c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		hops = append(hops, r.Response)
		return nil
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	base, _ := url.Parse(b.base)
	for _, h := range append(hops, resp) {
		if h.Request.URL.Host == base.Host { // not the identity provider's
			checkHeaders(b.t, h)
		}
	}
	return page{status: resp.StatusCode, url: resp.Request.URL.Path, body: string(data)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

// post submits a form; kv are name, value pairs.
func (b *browser) post(path string, kv ...string) page {
	b.t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var mailCodeRE = regexp.MustCompile(`is:\n\n    (\S+)\n`)

// mailedCode signs user in by mail: the code from the last mail to addr.
func (e *portalEnv) mailedCode(b *browser, user, addr string) string {
	e.t.Helper()
	p := b.get("/portal/signin")
	p = b.post("/portal/signin/mail", "csrf", p.csrf(), "user", user)
	if p.status != 200 || !strings.Contains(p.body, `id="signin-mailcode"`) {
		e.t.Fatalf("POST /portal/signin/mail = %d, want the mailed-code form:\n%s", p.status, p.body)
	}
	for _, m := range e.box.take() {
		if m.To == addr {
			if c := mailCodeRE.FindStringSubmatch(m.Body); c != nil {
				return c[1]
			}
		}
	}
	e.t.Fatalf("no sign-in code mailed to %s", addr)
	return ""
}

// signInMail signs user in with a mailed code and returns the token list.
func (e *portalEnv) signInMail(b *browser, user, addr string) page {
	e.t.Helper()
	code := e.mailedCode(b, user, addr)
	p := b.get("/portal/signin")
	p = b.post("/portal/signin/mailcode", "csrf", p.csrf(), "user", user, "code", code)
	if p.status != 200 || p.url != "/portal/tokens" {
		e.t.Fatalf("sign-in with the mailed code = %d at %s, want the token list:\n%s", p.status, p.url, p.body)
	}
	return p
}

var secretRE = regexp.MustCompile(`id="secret-base32">([^<]*)<`)

// addFirstToken adds and verifies a first token from the token list tl; it returns the token
// id, its secret and the page after the verified code.
func (e *portalEnv) addFirstToken(b *browser, tl page, proof string) (id, secret string, active page) {
	e.t.Helper()
	p := b.post("/portal/tokens/new", "csrf", tl.csrf(), "name", "work phone", "proof", proof)
	if p.status != 200 || !strings.HasPrefix(p.url, "/portal/tokens/pending/") {
		e.t.Fatalf("add a token = %d at %s:\n%s", p.status, p.url, p.body)
	}
	id = strings.TrimPrefix(p.url, "/portal/tokens/pending/")
	m := secretRE.FindStringSubmatch(p.body)
	if m == nil {
		e.t.Fatalf("no secret on the enrollment page:\n%s", p.body)
	}
	secret = strings.ReplaceAll(m[1], " ", "")
	active = b.post("/portal/tokens/pending/"+id+"/verify", "csrf", p.csrf(), "code", e.code(secret, 0))
	if active.status != 200 || active.text("verified") != "Security code successfully verified" {
		e.t.Fatalf("verify = %d:\n%s", active.status, active.body)
	}
	e.clock.add(30 * time.Second)
	return id, secret, active
}

// ack makes node cred acknowledge the store's current revision.
func (e *portalEnv) ack(cred string) {
	e.t.Helper()
	rev := e.store.Rev()
	if st := e.do("POST", "/v1/sync/ack", cred, map[string]any{"rev": rev, "count": 0, "digest": "", "lag_ms": 0, "version": "test"}, nil); st != 204 {
		e.t.Fatalf("ack = %d", st)
	}
}

// portalNotice is checkNotice for a change made on the portal.
func portalNotice(t *testing.T, msgs []mail.Message, addr, subject string, want, secrets []string) {
	t.Helper()
	checkNoticeBy(t, msgs, addr, subject, "the web portal, from 127.0.0.1", want, secrets)
}

var backupRE = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)

// TestPortalFirstTokenByMail: the whole first enrollment, signed in by a mailed code.
func TestPortalFirstTokenByMail(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	b := e.browser()
	p := b.get("/portal/")
	if p.url != "/portal/signin" || !strings.Contains(p.body, `id="signin-mail"`) || !strings.Contains(p.body, `id="signin-code"`) ||
		strings.Contains(p.body, `id="signin-oidc"`) || !strings.Contains(p.body, "<h1>Test HPC</h1>") ||
		!strings.Contains(p.body, `<footer id="contact">Help: help@example.org</footer>`) {
		t.Fatalf("GET /portal/ = %d at %s, want the sign-in page with mail and code only:\n%s", p.status, p.url, p.body)
	}
	if s := b.get("/portal/static/portal.css"); s.status != 200 || !strings.Contains(s.body, "@media") {
		t.Errorf("GET portal.css = %d", s.status)
	}
	code := e.mailedCode(b, "ann", "ann@example.org")
	signin := b.get("/portal/signin")
	tl := b.post("/portal/signin/mailcode", "csrf", signin.csrf(), "user", "ann", "code", code)
	if tl.url != "/portal/tokens" || !strings.Contains(tl.body, "You have no token yet") {
		t.Fatalf("sign-in = %d at %s:\n%s", tl.status, tl.url, tl.body)
	}
	// The code worked once: a second browser cannot sign in with it.
	b2 := e.browser()
	s2 := b2.get("/portal/signin")
	if r := b2.post("/portal/signin/mailcode", "csrf", s2.csrf(), "user", "ann", "code", code); r.status != 403 || r.text("error") == "" {
		t.Fatalf("replayed sign-in code = %d at %s, want 403 with an error:\n%s", r.status, r.url, r.body)
	}
	// The first token needs no proof: the mailed code proved who ann is.
	nw := b.get("/portal/tokens/new")
	if strings.Contains(nw.body, `id="token-proof"`) || !strings.Contains(nw.body, `id="token-name"`) {
		t.Fatalf("the first token's form asks for a proof:\n%s", nw.body)
	}
	p = b.post("/portal/tokens/new", "csrf", tl.csrf(), "name", "work phone")
	id := strings.TrimPrefix(p.url, "/portal/tokens/pending/")
	for _, want := range []string{`<img id="qr" src="data:image/png;base64,`, `<a id="otpauth" href="otpauth://totp/`,
		`id="secret-hex"`, `data-copy="secret-base32"`, `id="expires"`, `id="verify-code"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("enrollment page has no %q", want)
		}
	}
	secret := strings.ReplaceAll(secretRE.FindStringSubmatch(p.body)[1], " ", "")
	if hx := strings.ReplaceAll(p.text("secret-hex"), " ", ""); hx != hexSecret(t, secret) {
		t.Errorf("hex secret %q, want %q", hx, hexSecret(t, secret))
	}
	// A wrong code says why; a code from a phone 5 steps behind gets the CLI's skew hint.
	w := b.post("/portal/tokens/pending/"+id+"/verify", "csrf", p.csrf(), "code", "000000")
	if w.text("error") != enroll.WrongCodeAdvice {
		t.Errorf("wrong code: error %q, want %q", w.text("error"), enroll.WrongCodeAdvice)
	}
	w = b.post("/portal/tokens/pending/"+id+"/verify", "csrf", p.csrf(), "code", e.code(secret, -5))
	if want := enroll.SkewAdvice(-150); w.text("error") != want {
		t.Errorf("skewed code: error %q, want %q", w.text("error"), want)
	}
	n1 := e.cred
	a := b.post("/portal/tokens/pending/"+id+"/verify", "csrf", p.csrf(), "code", e.code(secret, 0))
	if a.text("verified") != "Security code successfully verified" || a.text("nodes") != "active on 0 of 1 login nodes" {
		t.Fatalf("verified: %q, %q:\n%s", a.text("verified"), a.text("nodes"), a.body)
	}
	codes := backupRE.FindAllStringSubmatch(a.body, -1)
	if len(codes) != 10 || !strings.Contains(a.body, `id="download-backup" class="button" download="backup-codes.txt" href="data:text/plain;charset=utf-8,`) ||
		!strings.Contains(a.body, `id="backup-saved-check"`) {
		t.Fatalf("backup codes section: %d codes:\n%s", len(codes), a.body)
	}
	if j := b.get("/portal/tokens/" + id + "/nodes"); strings.TrimSpace(j.body) != `{"active":0,"total":1}` {
		t.Errorf("nodes before the ack = %s", j.body)
	}
	e.ack(n1)
	if j := b.get("/portal/tokens/" + id + "/nodes"); strings.TrimSpace(j.body) != `{"active":1,"total":1}` {
		t.Errorf("nodes after the ack = %s", j.body)
	}
	if a2 := b.get("/portal/tokens/" + id + "/active"); a2.text("nodes") != "active on 1 of 1 login nodes" || strings.Contains(a2.body, "backup-codes") {
		t.Errorf("active page again: %q, backup codes shown again: %v", a2.text("nodes"), strings.Contains(a2.body, "backup-codes"))
	}
	done := b.post("/portal/tokens", "csrf", a.csrf())
	if done.text("notice") == "" || !strings.Contains(done.body, `<td class="state">active`) ||
		!strings.Contains(done.body, "active on 1 of 1 login nodes") || !strings.Contains(done.body, `<td class="name">work phone</td>`) {
		t.Errorf("token list after the first token:\n%s", done.body)
	}
	msgs := e.box.take()
	portalNotice(t, msgs, "ann@example.org", "new token added", []string{"work phone", "backup codes was created"}, []string{secret, code})
}

// TestPortalSameAnswerForUnknownUser: the page after asking for a mailed code is the same
// whether the user exists or not, and no mail goes out for an unknown one.
func TestPortalSameAnswerForUnknownUser(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "carl", "scopes": []string{"alpha"}}, nil) // no mail
	ask := func(user string) string {
		b := e.browser()
		p := b.get("/portal/signin")
		p = b.post("/portal/signin/mail", "csrf", p.csrf(), "user", user)
		body := csrfRE.ReplaceAllString(p.body, "")
		return strings.ReplaceAll(body, user, "USER")
	}
	known, unknown, nomail := ask("ann"), ask("nobody"), ask("carl")
	if known != unknown || known != nomail {
		t.Errorf("answers differ:\nknown:\n%s\nunknown:\n%s\nwithout mail:\n%s", known, unknown, nomail)
	}
	if msgs := e.box.take(); len(msgs) != 1 || msgs[0].To != "ann@example.org" {
		t.Errorf("mails = %+v, want one to ann", msgs)
	}
	// Unknown users get the same refusal as a wrong code.
	b := e.browser()
	p := b.get("/portal/signin")
	r1 := b.post("/portal/signin/code", "csrf", p.csrf(), "user", "nobody", "code", "123456")
	r2 := b.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", "123456")
	if r1.status != 403 || r1.text("error") != r2.text("error") {
		t.Errorf("sign-in by code: unknown %d %q, known %d %q; want the same 403", r1.status, r1.text("error"), r2.status, r2.text("error"))
	}
}

// TestPortalProofs: signed in with a code, a second token needs a proof, removal needs a proof,
// a used backup code is refused; new backup codes need a proof.
func TestPortalProofs(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	b := e.browser()
	tl := e.signInMail(b, "ann", "ann@example.org")
	id, secret, active := e.addFirstToken(b, tl, "")
	codes := backupRE.FindAllStringSubmatch(active.body, -1)
	e.box.take()

	// Sign in anew by a code of the token.
	b = e.browser()
	p := b.get("/portal/signin")
	tl = b.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", e.code(secret, 0))
	if tl.url != "/portal/tokens" || !strings.Contains(tl.body, `data-id="`+id+`"`) {
		t.Fatalf("sign-in by code = %d at %s:\n%s", tl.status, tl.url, tl.body)
	}
	e.clock.add(30 * time.Second)
	if nw := b.get("/portal/tokens/new"); !strings.Contains(nw.body, `id="token-proof"`) {
		t.Errorf("a second token's form has no proof field:\n%s", nw.body)
	}
	r := b.post("/portal/tokens/new", "csrf", tl.csrf(), "name", "laptop")
	if r.status != 403 || !strings.Contains(r.text("error"), "proof is required") {
		t.Errorf("second token without a proof = %d %q, want 403 asking for a proof", r.status, r.text("error"))
	}
	r = b.post("/portal/tokens/new", "csrf", tl.csrf(), "name", "laptop", "proof", e.code(secret, 0))
	if !strings.HasPrefix(r.url, "/portal/tokens/pending/") {
		t.Fatalf("second token with a proof = %d at %s:\n%s", r.status, r.url, r.body)
	}
	if l := b.get("/portal/tokens"); !strings.Contains(l.body, `<td class="state">pending`) || !strings.Contains(l.body, `<td class="name">laptop</td>`) {
		t.Errorf("token list has no pending laptop:\n%s", l.body)
	}
	e.clock.add(30 * time.Second)
	// Removal: without a proof refused and nothing changed; with a backup code done.
	r = b.post("/portal/tokens/"+id+"/remove", "csrf", tl.csrf(), "proof", "")
	if r.status != 403 || !strings.Contains(r.body, `data-id="`+id+`"`) {
		t.Errorf("remove without a proof = %d, token still listed %v", r.status, strings.Contains(r.body, `data-id="`+id+`"`))
	}
	bc := codes[0][1]
	r = b.post("/portal/tokens/"+id+"/remove", "csrf", tl.csrf(), "proof", bc)
	if r.url != "/portal/tokens" || r.text("notice") != "The token was removed; its codes no longer work." || strings.Contains(r.body, `data-id="`+id+`"`) {
		t.Fatalf("remove with a backup code = %d at %s:\n%s", r.status, r.url, r.body)
	}
	portalNotice(t, e.box.take(), "ann@example.org", "token removed", []string{id}, []string{bc, secret})
	// The used backup code is refused as a proof and as a sign-in.
	r = b.post("/portal/backup-codes", "csrf", tl.csrf(), "proof", bc)
	if r.status != 403 || strings.Contains(r.body, `id="backup-codes"`) {
		t.Errorf("new backup codes with a used backup code = %d", r.status)
	}
	b3 := e.browser()
	p = b3.get("/portal/signin")
	if r := b3.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", bc); r.status != 403 {
		t.Errorf("sign-in with a used backup code = %d, want 403", r.status)
	}
	r = b.post("/portal/backup-codes", "csrf", tl.csrf(), "proof", codes[1][1])
	if len(backupRE.FindAllStringSubmatch(r.body, -1)) != 10 || !strings.Contains(r.body, `id="print-backup"`) {
		t.Fatalf("new backup codes with a backup code = %d:\n%s", r.status, r.body)
	}
	portalNotice(t, e.box.take(), "ann@example.org", "new backup codes", nil, []string{codes[1][1]})
}

// TestPortalRefusesForeignAndForged: no CSRF token, a wrong one, another user's token id,
// another user's cookie: refused, nothing changed.
func TestPortalRefusesForeignAndForged(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	ann := e.browser()
	atl := e.signInMail(ann, "ann", "ann@example.org")
	annID, _, _ := e.addFirstToken(ann, atl, "")
	bob := e.browser()
	btl := e.signInMail(bob, "bob", "bob@example.org")
	bobID, _, _ := e.addFirstToken(bob, btl, "")
	e.box.take()

	for _, tt := range []struct {
		name string
		b    *browser
		path string
		form []string
		want int
	}{
		{"no CSRF token", ann, "/portal/tokens/" + annID + "/rename", []string{"name", "evil"}, 403},
		{"wrong CSRF token", ann, "/portal/tokens/" + annID + "/rename", []string{"csrf", "x" + atl.csrf(), "name", "evil"}, 403},
		{"bob's CSRF token", ann, "/portal/tokens/" + annID + "/rename", []string{"csrf", btl.csrf(), "name", "evil"}, 403},
		{"bob's token id", ann, "/portal/tokens/" + bobID + "/rename", []string{"csrf", atl.csrf(), "name", "evil"}, 404},
		{"bob's token id, remove", ann, "/portal/tokens/" + bobID + "/remove", []string{"csrf", atl.csrf(), "proof", "123456"}, 404},
		{"sign-out without CSRF", ann, "/portal/signout", nil, 403},
		{"sign-in without CSRF", e.browser(), "/portal/signin/code", []string{"user", "ann", "code", "123456"}, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.b.t = t
			if r := tt.b.post(tt.path, tt.form...); r.status != tt.want {
				t.Errorf("POST %s = %d, want %d", tt.path, r.status, tt.want)
			}
		})
	}
	ann.t, bob.t = t, t
	for _, c := range []struct {
		b      *browser
		mine   string
		theirs string
	}{{ann, annID, bobID}, {bob, bobID, annID}} {
		l := c.b.get("/portal/tokens")
		if !strings.Contains(l.body, `data-id="`+c.mine+`"`) || strings.Contains(l.body, `data-id="`+c.theirs+`"`) ||
			strings.Contains(l.body, "evil") {
			t.Errorf("token list after the refusals:\n%s", l.body)
		}
		if g := c.b.get("/portal/tokens/" + c.theirs + "/nodes"); g.status != 404 {
			t.Errorf("nodes of another user's token = %d, want 404", g.status)
		}
	}
	if msgs := e.box.take(); len(msgs) != 0 {
		t.Errorf("mails after refusals: %+v", msgs)
	}
	// bob's cookie in another browser sees bob's tokens only.
	u, _ := url.Parse(e.ts.URL)
	thief := e.browser()
	thief.c.Jar.SetCookies(u, bob.c.Jar.Cookies(u))
	if l := thief.get("/portal/tokens"); !strings.Contains(l.body, `data-id="`+bobID+`"`) || strings.Contains(l.body, `data-id="`+annID+`"`) {
		t.Errorf("bob's cookie shows:\n%s", l.body)
	}
}

// TestPortalSessionExpiry: a session ends after session_idle unused and session_max in all.
func TestPortalSessionExpiry(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	b := e.browser()
	e.signInMail(b, "ann", "ann@example.org")
	e.clock.add(14 * time.Minute)
	if p := b.get("/portal/tokens"); p.url != "/portal/tokens" {
		t.Fatalf("after 14 idle minutes: at %s, want still signed in", p.url)
	}
	e.clock.add(15 * time.Minute)
	if p := b.get("/portal/tokens"); p.url != "/portal/signin" {
		t.Fatalf("after 15 idle minutes: at %s, want the sign-in page", p.url)
	}
	e.clock.add(time.Minute) // a new mail code may go out
	b = e.browser()
	e.signInMail(b, "ann", "ann@example.org")
	for i := range 8*6 - 1 { // in use every 10 minutes for 8 hours
		e.clock.add(10 * time.Minute)
		if p := b.get("/portal/tokens"); p.url != "/portal/tokens" {
			t.Fatalf("after %d minutes in use: at %s, want still signed in", (i+1)*10, p.url)
		}
	}
	e.clock.add(10 * time.Minute)
	if p := b.get("/portal/tokens"); p.url != "/portal/signin" {
		t.Fatalf("after 8 hours in use: at %s, want the sign-in page", p.url)
	}
	// The sweep removes the ended sessions' records.
	if _, err := e.srv.sweepSessions(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		return tx.Range(prefixSession, func(kv.KeyValue) error { n++; return nil })
	})
	if n != 0 {
		t.Errorf("%d session records left after the sweep, want 0", n)
	}
}

// TestPortalSignOutEverywhere: two registry servers on one store; a session signed in on one
// is served by the other, and signing out on one ends it on both.
func TestPortalSignOutEverywhere(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	cfg := DefaultConfig()
	cfg.BookmarkInterval = time.Second
	portalConfig(&cfg)
	srv2, err := New(context.Background(), Options{Config: cfg, Store: e.store, Sealer: e.keys, Now: e.clock.now, Notifier: e.box,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewUnstartedServer(srv2.Handler())
	pair, _, _ := e.ca.issue(t, "registry", true)
	ts2.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	ts2.StartTLS()
	t.Cleanup(func() { srv2.Shutdown(); ts2.Close() })

	b := e.browser()
	tl := e.signInMail(b, "ann", "ann@example.org")
	b2 := &browser{t: t, c: b.c, base: ts2.URL} // the same cookies (they do not depend on the port)
	if p := b2.get("/portal/tokens"); p.url != "/portal/tokens" {
		t.Fatalf("replica 2: at %s, want the token list", p.url)
	}
	u, _ := url.Parse(e.ts.URL)
	kept := b.c.Jar.Cookies(u) // a copy of the cookie, kept past the sign-out
	if p := b2.post("/portal/signout", "csrf", tl.csrf()); p.url != "/portal/signin" || p.text("notice") != "You are signed out." {
		t.Fatalf("sign-out on replica 2: at %s %q", p.url, p.text("notice"))
	}
	c := e.browser()
	c.c.Jar.SetCookies(u, kept)
	if p := c.get("/portal/tokens"); p.url != "/portal/signin" {
		t.Errorf("replica 1 with the cookie after the sign-out: at %s, want the sign-in page", p.url)
	}
}

// TestPortalRateLimits: sign-in attempts per client address, and failed codes per user (the
// proof-failure budget: after the free failures even the right code waits).
func TestPortalRateLimits(t *testing.T) {
	t.Parallel()
	e := newPortalEnv(t, nil)
	b := e.browser()
	tl := e.signInMail(b, "ann", "ann@example.org")
	_, secret, _ := e.addFirstToken(b, tl, "")
	c := e.browser()
	p := c.get("/portal/signin")
	for i := range proofFreeFailures + 1 {
		if r := c.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", "000000"); r.status != 403 {
			t.Fatalf("wrong code %d = %d, want 403", i, r.status)
		}
	}
	if r := c.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", e.code(secret, 0)); r.status != 403 {
		t.Fatalf("right code in the back-off = %d at %s, want 403", r.status, r.url)
	}
	e.clock.add(time.Hour)
	if r := c.post("/portal/signin/code", "csrf", p.csrf(), "user", "ann", "code", e.code(secret, 0)); r.url != "/portal/tokens" {
		t.Fatalf("right code after the back-off = %d at %s, want signed in", r.status, r.url)
	}
	// Per address: SignInPerAddress attempts in the window, then 429 whatever the user. The
	// window starts afresh: the attempts above are older than it.
	e.clock.add(portal.SignInWindow)
	d := e.browser()
	p = d.get("/portal/signin")
	for i := range portal.SignInPerAddress {
		if r := d.post("/portal/signin/code", "csrf", p.csrf(), "user", "nobody", "code", "000000"); r.status == 429 {
			t.Fatalf("attempt %d of %d in the window: 429, want it let through", i+1, portal.SignInPerAddress)
		}
	}
	last := d.post("/portal/signin/code", "csrf", p.csrf(), "user", "nobody", "code", "000000")
	if last.status != 429 || !strings.Contains(last.text("error"), "Too many sign-in attempts from your address") {
		t.Fatalf("attempt %d: %d %q, want 429", portal.SignInPerAddress+1, last.status, last.text("error"))
	}
	e.clock.add(portal.SignInWindow)
	if r := d.post("/portal/signin/code", "csrf", p.csrf(), "user", "nobody", "code", "000000"); r.status != 403 {
		t.Errorf("after the window = %d, want 403 (a wrong code again)", r.status)
	}
}

// TestPortalMailSignInRelay: the sign-in code goes out through the real mail sender to an
// SMTP relay, and signs in.
func TestPortalMailSignInRelay(t *testing.T) {
	t.Parallel()
	relay := mailtest.Start(t)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e := newEnv(t, envOptions{cfg: func(c *Config) {
		portalConfig(c)
		c.Mail.Host = relay.Addr
		c.Mail.StartTLS = mail.StartTLSNever
		c.Mail.Contact = "help@example.org"
	}, opts: func(o *Options) { o.Now = clock.now }})
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "ann", "mail": "ann@example.org", "scopes": []string{"alpha"}}, nil)
	pe := &portalEnv{enrollEnv: &enrollEnv{env: e, clock: clock}}
	b := pe.browser()
	p := b.get("/portal/signin")
	b.post("/portal/signin/mail", "csrf", p.csrf(), "user", "ann")
	var msgs []string
	for deadline := time.Now().Add(20 * time.Second); len(msgs) == 0 && time.Now().Before(deadline); {
		msgs = relay.MessagesTo(t, "ann@example.org")
		if len(msgs) == 0 {
			time.Sleep(50 * time.Millisecond) // the relay writes the file when the mail arrives
		}
	}
	if len(msgs) != 1 {
		t.Fatalf("%d mails to ann, want 1", len(msgs))
	}
	m := regexp.MustCompile(`is:\r?\n\r?\n    (\S+)\r?\n`).FindStringSubmatch(msgs[0])
	if m == nil || !strings.Contains(msgs[0], "Subject: [Test HPC] your sign-in code") {
		t.Fatalf("mail has no code:\n%s", msgs[0])
	}
	p = b.get("/portal/signin")
	if r := b.post("/portal/signin/mailcode", "csrf", p.csrf(), "user", "ann", "code", m[1]); r.url != "/portal/tokens" {
		t.Fatalf("sign-in with the relayed code: at %s:\n%s", r.url, r.body)
	}
}

// TestPortalOIDC: sign-in through an OpenID provider started here; the identity must be a user
// the registry knows and in the required group; a wrong state and a stale code are refused; the
// first token needs no further proof.
func TestPortalOIDC(t *testing.T) {
	t.Parallel()
	idp, err := oidctest.Start(oidctest.Options{TLS: true, CodeLifetime: time.Minute, Users: []oidctest.User{
		{Name: "ann", Password: "ann-pw", Groups: []string{"hpc", "hpc-admin"}},
		{Name: "bob", Password: "bob-pw"},
		{Name: "zed", Password: "zed-pw", Groups: []string{"hpc"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	clock := &fakeClock{t: time.Now().UTC()} // ID tokens carry the provider's wall-clock times
	box := &mailbox{}
	e := newEnv(t, envOptions{cfg: func(c *Config) {
		portalConfig(c)
		c.Portal.SignIn = []string{portal.SignInOIDC, portal.SignInMail}
		c.Portal.OIDC.Issuer, c.Portal.OIDC.ClientID, c.Portal.OIDC.RequiredGroup = idp.Issuer(), "portal", "hpc"
		c.Portal.AdminGroup = "hpc-admin"
	}, opts: func(o *Options) { o.Now, o.Notifier, o.OIDCClient = clock.now, box, idp.HTTPClient() }})
	idp.AddClient(oidctest.Client{ID: "portal", RedirectURIs: []string{e.ts.URL + "/portal/oidc/callback"}})
	for _, u := range []string{"ann", "bob"} {
		e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": u, "mail": u + "@example.org", "scopes": []string{"alpha"}}, nil)
	}
	pe := &portalEnv{enrollEnv: &enrollEnv{env: e, clock: clock, box: box}}
	roots := idp.HTTPClient().Transport.(*http.Transport).TLSClientConfig.RootCAs.Clone()
	roots.AddCert(e.ca.cert)
	loginRE := regexp.MustCompile(`name="id" value="([^"]+)"`)
	// signIn runs the provider's login page as user; it returns the answer of the callback.
	signIn := func(b *browser, user string) page {
		t.Helper()
		b.c.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
		p := b.get("/portal/signin")
		if !strings.Contains(p.body, `<a id="signin-oidc" class="button" href="/portal/oidc/start">`) || strings.Contains(p.body, `id="signin-code"`) {
			t.Fatalf("sign-in page:\n%s", p.body)
		}
		p = b.get("/portal/oidc/start")
		m := loginRE.FindStringSubmatch(p.body)
		if m == nil {
			t.Fatalf("no login form at the provider (%d at %s):\n%s", p.status, p.url, p.body)
		}
		req, _ := http.NewRequest("POST", idp.Issuer()+"/login", strings.NewReader(url.Values{"id": {m[1]}, "username": {user}, "password": {user + "-pw"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.do(req)
	}
	b := pe.browser()
	p := signIn(b, "ann")
	if p.url != "/portal/oidc/callback" || !strings.Contains(p.body, `<meta http-equiv="refresh" content="0; url=/portal/tokens">`) {
		t.Fatalf("callback = %d at %s:\n%s", p.status, p.url, p.body)
	}
	tl := b.get("/portal/tokens")
	if tl.url != "/portal/tokens" || !strings.Contains(tl.body, "Signed in as <strong>ann</strong>") {
		t.Fatalf("after the OIDC sign-in: at %s:\n%s", tl.url, tl.body)
	}
	if _, _, a := pe.addFirstToken(b, tl, ""); !strings.Contains(a.body, `id="backup-codes"`) {
		t.Errorf("first token after an OIDC sign-in: no backup codes")
	}
	// ann is in the admin group: the read-only overview.
	e.addNode("n9", "alpha")
	if a := b.get("/portal/admin"); a.status != 200 || !strings.Contains(a.body, `<tr class="node"><td>n9</td><td>alpha</td>`) ||
		!strings.Contains(a.body, `<tr class="user"><td>bob</td>`) || !strings.Contains(a.body, "<td>enroll.finish</td>") {
		t.Errorf("admin overview = %d:\n%s", a.status, a.body)
	}
	// Signed in by mail, ann is no admin here.
	mb := pe.browser()
	pe.signInMail(mb, "ann", "ann@example.org")
	if a := mb.get("/portal/admin"); a.status != 404 || strings.Contains(a.body, "admin-users") {
		t.Errorf("admin overview of a mail session = %d, want 404", a.status)
	}
	// Not in the required group; unknown to the registry: refused, no session.
	for _, u := range []string{"bob", "zed"} {
		c := pe.browser()
		if p := signIn(c, u); p.status != 403 || p.text("error") == "" {
			t.Errorf("OIDC sign-in of %s = %d %q, want 403 with a reason", u, p.status, p.text("error"))
		}
		if l := c.get("/portal/tokens"); l.url != "/portal/signin" {
			t.Errorf("%s is signed in after a refused OIDC sign-in", u)
		}
	}
	// A callback with a state that was never started is refused.
	c := pe.browser()
	c.c.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
	if p := c.get("/portal/oidc/callback?state=forged&code=x"); p.status != 403 {
		t.Errorf("callback with a forged state = %d, want 403", p.status)
	}
	// An authorization code used after its lifetime is refused.
	c = pe.browser()
	c.c.CheckRedirect = nil
	c.c.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
	p = c.get("/portal/oidc/start")
	m := loginRE.FindStringSubmatch(p.body)
	c.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("POST", idp.Issuer()+"/login", strings.NewReader(url.Values{"id": {m[1]}, "username": {"ann"}, "password": {"ann-pw"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	r, err = c.c.Get(r.Header.Get("Location")) // the provider's callback: on to ours
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	callback := r.Header.Get("Location")
	idp.Advance(2 * time.Minute)
	c.c.CheckRedirect = nil
	if p := c.get(strings.TrimPrefix(callback, e.ts.URL)); p.status != 403 {
		t.Errorf("callback with an expired code = %d, want 403:\n%s", p.status, p.body)
	}
}
