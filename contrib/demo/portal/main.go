// Command demo-portal plays the person in the registry's web portal for `make demo DEMO_AUTO=1`:
// in headless Chromium it signs in with the code mailed to the user (read from the demo's mail
// sink directory), adds a token, reads its secret from the enrollment page, types the first code
// (computed as an authenticator app does), waits until the page says the token is active on every
// login node and confirms the backup codes. It writes the secret (base32) and the code it typed
// (and the token's algorithm, digits and period) to files for the demo's logins, and prints how long the token took from the verified code to
// "active on all nodes". It prints no secret and no code.
//
// A program of its own rather than a `go test -run` of e2e/portal: the tests start their own
// registry and node, while the demo drives the registry and node the demo started and shows; and
// `make demo` runs a built binary without the test toolchain's build of the test package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "the registry's URL, https://127.0.0.1:PORT")
	flag.StringVar(&o.spki, "spki", "", "base64 SHA-256 of the registry's TLS key (SubjectPublicKeyInfo): Chromium trusts only it")
	flag.StringVar(&o.user, "user", "", "the user to sign in as")
	flag.StringVar(&o.mailDir, "mail-dir", "", "the mail sink's directory (*.eml)")
	flag.StringVar(&o.out, "out", "", "directory (0700) for the files secret, code and params")
	flag.StringVar(&o.chromium, "chromium", "/usr/bin/chromium", "the browser")
	flag.Parse()
	if o.url == "" || o.spki == "" || o.user == "" || o.mailDir == "" || o.out == "" {
		fmt.Fprintln(os.Stderr, "demo-portal: -url, -spki, -user, -mail-dir and -out are needed")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "demo-portal: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	url, spki, user, mailDir, out, chromium string
}

// mailedCode is the form of the one-time code in the sign-in mail (pkg/backupcode's).
var mailedCode = regexp.MustCompile(`\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b`)

func say(format string, a ...any) { fmt.Printf("  "+format+"\n", a...) }

func run(ctx context.Context, o options) error {
	dataDir, err := os.MkdirTemp("", "demo-portal-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(o.chromium),
		chromedp.UserDataDir(dataDir), chromedp.WindowSize(1280, 800),
		chromedp.Flag("ignore-certificate-errors-spki-list", o.spki))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	b, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	// The first run starts the browser, on the tab's own context: a context derived from it with
	// a timeout would end the browser with it.
	if err := chromedp.Do(b); err != nil {
		return fmt.Errorf("start %s: %w", o.chromium, err)
	}
	p := page{ctx: b}

	say("browser: open %s/portal/", o.url)
	if err := p.load(chromedp.Navigate(o.url + "/portal/")); err != nil {
		return err
	}
	say("sign in: user name %s, \"mail me a code\"", o.user)
	seen := mails(o.mailDir)
	if err := p.submit("#mail-user", o.user); err != nil {
		return err
	}
	code, err := waitMail(ctx, o.mailDir, seen)
	if err != nil {
		return err
	}
	say("the code arrived by mail (%s); typed into the page", o.mailDir)
	if err := p.submit("#mailcode-code", code); err != nil {
		return err
	}
	if err := p.wantPath(o.url, "/portal/tokens"); err != nil {
		return err
	}
	say("signed in: the token list; \"Add a token\", named phone")
	if err := p.load(chromedp.Click(chromedp.CSS("a#add-token"))); err != nil {
		return err
	}
	if err := p.submit("#token-name", "phone"); err != nil {
		return err
	}
	uri, err := p.eval(`document.querySelector("a#otpauth").getAttribute("href")`)
	if err != nil {
		return fmt.Errorf("the enrollment page has no a#otpauth: %w", err)
	}
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return fmt.Errorf("the link is no otpauth URI: %w", err)
	}
	say("enrollment page: QR code, link into the app, secret in base32 and hex (the demo plays the app)")
	first, err := totp.GenerateCodeCustom(key.Secret(), time.Now(), totp.ValidateOpts{Period: uint(key.Period()),
		Digits: key.Digits(), Algorithm: key.Algorithm()})
	if err != nil {
		return err
	}
	params := fmt.Sprintf("%s %d %d", key.Algorithm(), key.Digits().Length(), key.Period())
	for name, v := range map[string]string{"secret": key.Secret(), "code": first, "params": params} {
		if err := os.WriteFile(filepath.Join(o.out, name), []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := p.submit("#verify-code", first); err != nil {
		return err
	}
	verified, _ := p.eval(`(document.querySelector("p#verified")||{}).textContent||""`)
	if !strings.Contains(verified, "verified") {
		msg, _ := p.eval(`(document.querySelector("p#error")||{}).textContent||""`)
		return fmt.Errorf("the first code was not verified: %s", strings.TrimSpace(msg))
	}
	say("%s", strings.TrimSpace(verified))
	var nodes string
	for {
		n, err := p.eval(`(function(){var e=document.querySelector("p#nodes");` +
			`return e&&e.dataset.total!=="0"&&e.dataset.active===e.dataset.total?e.textContent:""})()`)
		if err != nil {
			return err
		}
		if nodes = strings.TrimSpace(n); nodes != "" {
			break
		}
		if ctx.Err() != nil {
			return errors.New("the page never said the token is active on every node")
		}
		time.Sleep(20 * time.Millisecond)
	}
	say("%s: %v after the verified code", nodes, time.Since(start).Round(time.Millisecond))
	count, _ := p.eval(`String(document.querySelectorAll("ol#backup-code-list li").length)`)
	say("%s backup codes shown once (Download, Print); \"I have saved these codes\"", count)
	if err := p.do(chromedp.Click(chromedp.CSS("#backup-saved-check"))); err != nil {
		return err
	}
	if err := p.load(chromedp.Click(chromedp.CSS(`form#backup-saved [type=submit], form#backup-saved button`))); err != nil {
		return err
	}
	return p.wantPath(o.url, "/portal/tokens")
}

// page drives the tab.
type page struct{ ctx context.Context }

func (p page) do(acts ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	return chromedp.Do(ctx, acts...)
}

// load runs the trigger and waits for the page it leads to.
func (p page) load(trigger chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.WaitEvent(pageLoad, nil, trigger))
	return err
}

// submit types value into the field and presses Enter.
func (p page) submit(sel, value string) error {
	if err := p.load(chromedp.SendKeys(chromedp.CSS(sel), value+kb.Enter)); err != nil {
		return fmt.Errorf("type into %s: %w", sel, err)
	}
	return nil
}

func (p page) eval(js string) (string, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
}

func (p page) wantPath(base, path string) error {
	loc, err := chromedp.Run(p.ctx, chromedp.Location())
	if err != nil {
		return err
	}
	if got, _, _ := strings.Cut(strings.TrimPrefix(loc, base), "?"); got != path {
		msg, _ := p.eval(`(document.querySelector("p#error")||{}).textContent||""`)
		return fmt.Errorf("the browser shows %s, want %s: %s", loc, path, strings.TrimSpace(msg))
	}
	return nil
}

// mails lists the sink's messages.
func mails(dir string) map[string]bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	m := make(map[string]bool, len(files))
	for _, f := range files {
		m[f] = true
	}
	return m
}

// waitMail waits for a new message with a one-time code and returns the code.
func waitMail(ctx context.Context, dir string, seen map[string]bool) (string, error) {
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		sort.Strings(files)
		for _, f := range files {
			if seen[f] {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			if c := mailedCode.FindString(string(b)); c != "" {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", errors.New("no mail with a sign-in code arrived")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pageLoad is the load event of the page.
var pageLoad = cdppage.LoadEventFired
