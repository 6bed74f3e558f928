//go:build linux

package portal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// wantHeaders are the headers every portal response carries (the contract's list).
var wantHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"Referrer-Policy":        "no-referrer",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
}

// sessionCookie is the portal's session cookie.
const sessionCookie = "__Host-pamtotp"

// startChromium starts headless Chromium that trusts the servers whose keys are pinned (their
// SPKI hashes; no other certificate error is ignored), and returns the browser's context.
func startChromium(t *testing.T, spkis ...string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spkis, ",")),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// tab is one tab in a browser context of its own (its own cookies), driven by one test.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string // the registry's https://127.0.0.1:PORT
	dl   string // the download directory

	mu      sync.Mutex
	seen    []*network.Response // responses of the portal not yet checked
	dialogs int                 // JavaScript dialogs seen (beforeunload), each accepted
}

// newTab opens a tab in a fresh browser context of the browser; downloads go to a temp dir.
func newTab(t *testing.T, browserCtx context.Context, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, base: base, dl: t.TempDir()}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			if strings.HasPrefix(e.Response.URL, base+"/portal/") {
				tb.mu.Lock()
				tb.seen = append(tb.seen, e.Response)
				tb.mu.Unlock()
			}
		case *page.EventJavascriptDialogOpening:
			// The backup codes' "leave this page?" question: count it, and leave.
			tb.mu.Lock()
			tb.dialogs++
			tb.mu.Unlock()
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: tb.dl,
		BrowserContextID: chromedp.FromContext(ctx).BrowserContextID})
	if err != nil {
		t.Fatalf("set the download directory: %v", err)
	}
	return tb
}

// dialogCount is how many JavaScript dialogs the tab has seen (and accepted).
func (b *tab) dialogCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dialogs
}

// do runs actions and fails the test on an error.
func (b *tab) do(what string, acts ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, acts...); err != nil {
		b.t.Fatalf("%s: %v (page %s)", what, err, b.location())
	}
}

// load runs the trigger and waits for the page it leads to, then checks the headers of every
// portal response since the last check.
func (b *tab) load(what string, trigger chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, trigger)); err != nil {
		b.t.Fatalf("%s: %v (page %s)", what, err, b.location())
	}
	b.checkHeaders()
	shoot(b)
}

// open navigates to a portal path ("/portal/signin").
func (b *tab) open(path string) {
	b.t.Helper()
	b.load("open "+path, chromedp.Navigate(b.base+path))
}

// submit types into the fields of a form (selector -> value, in order) and presses Enter in
// the last one, as a person would, and waits for the next page.
func (b *tab) submit(what string, fields ...string) {
	b.t.Helper()
	if len(fields) == 0 || len(fields)%2 != 0 {
		b.t.Fatalf("submit %s: fields are selector, value pairs", what)
	}
	for i := 0; i < len(fields); i += 2 {
		// Empty the field first (a prefilled one), then type.
		b.do(what, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).value=""`, fields[i])))
		if i < len(fields)-2 {
			b.do(what, chromedp.SendKeys(chromedp.CSS(fields[i]), fields[i+1]))
		}
	}
	last := fields[len(fields)-2]
	b.load(what, chromedp.SendKeys(chromedp.CSS(last), fields[len(fields)-1]+kb.Enter))
}

// click clicks an element that leads to another page and waits for it.
func (b *tab) click(what, sel string) {
	b.t.Helper()
	b.load(what, chromedp.Click(chromedp.CSS(sel)))
}

// text is the text of the element, "" when there is none.
func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(function(){var e=document.querySelector(%q);return e?e.textContent:""})()`, sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// attr is an attribute of the element ("" when absent); the test fails without the element.
func (b *tab) attr(sel, name string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[*string](fmt.Sprintf(
		`(function(){var e=document.querySelector(%q);return e?(e.getAttribute(%q)||""):null})()`, sel, name)))
	if err != nil {
		b.t.Fatalf("attribute %s of %s: %v", name, sel, err)
	}
	if v == nil {
		b.t.Fatalf("no %s on %s", sel, b.location())
	}
	return *v
}

// has reports whether an element matches sel.
func (b *tab) has(sel string) bool {
	b.t.Helper()
	ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q)!==null`, sel)))
	if err != nil {
		b.t.Fatalf("look for %s: %v", sel, err)
	}
	return ok
}

// texts is the text of every element matching sel.
func (b *tab) texts(sel string) []string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).map(function(e){return e.textContent.trim()})`, sel)))
	if err != nil {
		b.t.Fatalf("texts of %s: %v", sel, err)
	}
	return v
}

// location is the URL of the page shown.
func (b *tab) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return s
}

// wantPath fails the test unless the page shown is at one of paths (query left off). The
// message names the page by its headings and its error only: the pages may hold secrets.
func (b *tab) wantPath(what string, paths ...string) {
	b.t.Helper()
	loc := strings.TrimPrefix(b.location(), b.base)
	p, _, _ := strings.Cut(loc, "?")
	for _, want := range paths {
		if p == want {
			return
		}
	}
	b.t.Fatalf("%s: the browser shows %s, want %s (headings %q, error %q)", what, loc, strings.Join(paths, " or "),
		b.texts("h1, h2"), b.text("#error"))
}

// checkHeaders asserts the security headers on every portal response seen since the last check.
func (b *tab) checkHeaders() {
	b.t.Helper()
	b.mu.Lock()
	seen := b.seen
	b.seen = nil
	b.mu.Unlock()
	for _, r := range seen {
		h := map[string]string{}
		for k, v := range r.Headers {
			h[strings.ToLower(k)] = fmt.Sprint(v)
		}
		for k, want := range wantHeaders {
			if got := h[strings.ToLower(k)]; got != want {
				b.t.Errorf("%s: header %s = %q, want %q", r.URL, k, got, want)
			}
		}
		cc := h["cache-control"]
		static := strings.HasPrefix(r.URL, b.base+"/portal/static/")
		if (!static && cc != "no-store") || (static && cc != "no-store" && cc != "public, max-age=3600") {
			b.t.Errorf("%s: Cache-Control = %q, want no-store", r.URL, cc)
		}
	}
	b.checkCookie()
}

// cookieSameSite is the SameSite each of the portal's cookies must have: the session and the
// sign-in forms' CSRF cookie Strict; the OpenID Connect flow's Lax (it comes back from the IdP).
var cookieSameSite = map[string]network.CookieSameSite{
	sessionCookie:             network.CookieSameSiteStrict,
	sessionCookie + "-signin": network.CookieSameSiteStrict,
	sessionCookie + "-oidc":   network.CookieSameSiteLax,
}

// checkCookie asserts the flags of the portal's cookies the browser holds.
func (b *tab) checkCookie() {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/portal/"}})
	if err != nil {
		b.t.Fatalf("cookies: %v", err)
	}
	for _, c := range res.Cookies {
		same, ok := cookieSameSite[c.Name]
		if !ok {
			b.t.Errorf("the browser holds a cookie %q of the portal; want only %v", c.Name, cookieSameSite)
			continue
		}
		if !c.HTTPOnly || !c.Secure || c.SameSite != same || c.Path != "/" || c.Domain != "127.0.0.1" {
			b.t.Errorf("cookie %s: HttpOnly %v, Secure %v, SameSite %q, Path %q, Domain %q; want HttpOnly, Secure, %s, /, host-only",
				c.Name, c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Domain, same)
		}
	}
}

// session is the value of the browser's session cookie ("" when none).
func (b *tab) session() string {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/portal/"}})
	if err != nil {
		b.t.Fatalf("cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// download clicks a download link and returns the downloaded file's content.
func (b *tab) download(sel, name string) string {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
	// Chromium writes NAME.crdownload and renames it to NAME when the download is complete.
	waitFor(b.t, 10*time.Second, "the download of "+name, func() (bool, error) {
		_, err := os.Stat(filepath.Join(b.dl, name))
		return err == nil, err
	})
	data, err := os.ReadFile(filepath.Join(b.dl, name))
	if err != nil {
		b.t.Fatalf("the downloaded file: %v", err)
	}
	return string(data)
}

// keyboardTo presses Tab until the element with id has the focus (at most 30 times).
func (b *tab) keyboardTo(id string) {
	b.t.Helper()
	for range 30 {
		b.do("press Tab", chromedp.KeyEvent(kb.Tab))
		got, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ""`))
		if err != nil {
			b.t.Fatal(err)
		}
		if got == id {
			return
		}
	}
	b.t.Fatalf("30 presses of Tab on %s never reach #%s", b.location(), id)
}

// keyboardSubmit types value into the focused field and presses Enter, and waits for the page.
func (b *tab) keyboardSubmit(what, value string) {
	b.t.Helper()
	b.do(what, chromedp.KeyEvent(value))
	b.load(what, chromedp.KeyEvent(kb.Enter))
}

// screenshots is whether to save screenshots (PAM_TOTP_SCREENSHOTS=1, make screenshots).
var screenshots = os.Getenv("PAM_TOTP_SCREENSHOTS") == "1"

var (
	shotMu sync.Mutex
	shot   = map[string]bool{}
)

// shootAs saves the page at phone and desktop width as docs/portal/NAME-phone.png and
// NAME-desktop.png, once per name, when screenshots are asked for.
func shootAs(b *tab, name string) {
	b.t.Helper()
	if !screenshots {
		return
	}
	shotMu.Lock()
	done := shot[name]
	shot[name] = true
	shotMu.Unlock()
	if done {
		return
	}
	dir := filepath.Join(repoRoot, "docs", "portal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, size := range []struct {
		name string
		w, h int64
		m    bool
	}{{"phone", 390, 844, true}, {"desktop", 1280, 800, false}} {
		b.do("viewport "+size.name, chromedp.EmulateViewport(size.w, size.h,
			func(p *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
				p.Mobile = size.m
			}))
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+size.name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do("viewport back", chromedp.EmulateViewport(1280, 800))
}

// shoot is shootAs with a name made of the page's path without its ids, and "-error" when
// the page shows one: /portal/tokens/pending/ID/verify with an error is "enroll-verify-error".
// Pages of other sites (the OpenID provider's) and the verified page (taken once its node count
// is complete, as "verified") are left out.
func shoot(b *tab) {
	if !screenshots {
		return
	}
	loc, ok := strings.CutPrefix(b.location(), b.base+"/portal/")
	if !ok || b.has("p#verified") {
		return
	}
	loc, _, _ = strings.Cut(loc, "?")
	var parts []string
	for i, p := range strings.Split(loc, "/") {
		switch {
		case p == "":
		case i == 0 && p == "tokens" && strings.HasPrefix(loc, "tokens/pending/"):
			parts = append(parts, "enroll")
		case p == "pending":
		case isID(p):
			if parts[0] == "tokens" {
				parts[0] = "token" // tokens/ID/active: token-active
			}
		default:
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		parts = []string{"signin"}
	}
	name := strings.Join(parts, "-")
	if b.has("#error") {
		name += "-error"
	}
	shootAs(b, name)
}

// isID reports whether a path segment is a token id (hex).
func isID(s string) bool {
	if len(s) < 6 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
