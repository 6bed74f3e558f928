package portal

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"all methods", func(c *Config) {
			c.SignIn = []string{SignInOIDC, SignInMail, SignInCode}
			c.OIDC.Issuer, c.OIDC.ClientID = "https://idp.example.org/realms/hpc", "portal"
		}, ""},
		{"oidc without its settings", func(c *Config) { c.SignIn = []string{SignInOIDC} }, "portal.oidc issuer"},
		{"unknown method", func(c *Config) { c.SignIn = []string{"sms"} }, `sign_in "sms"`},
		{"twice", func(c *Config) { c.SignIn = []string{SignInMail, SignInMail} }, "twice"},
		{"none", func(c *Config) { c.SignIn = nil }, "at least one"},
		{"idle", func(c *Config) { c.SessionIdle = 0 }, "session_idle"},
		{"max", func(c *Config) { c.SessionMax = time.Minute }, "session_max"},
		{"site name line", func(c *Config) { c.SiteName = "a\nb" }, "site_name"},
		{"contact line", func(c *Config) { c.Contact = "a\rb" }, "contact"},
		{"public url path", func(c *Config) { c.PublicURL = "https://r.example.org/x" }, "public_url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSessionExpired(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := Session{Created: t0, LastSeen: t0.Add(7 * time.Hour)}
	for _, tt := range []struct {
		at   time.Duration
		want bool
	}{{7*time.Hour + 14*time.Minute, false}, {7*time.Hour + 15*time.Minute, true}, {8 * time.Hour, true}} {
		s := s
		if tt.at == 8*time.Hour {
			s.LastSeen = t0.Add(8*time.Hour - time.Minute)
		}
		if got := s.Expired(t0.Add(tt.at), 15*time.Minute, 8*time.Hour); got != tt.want {
			t.Errorf("Expired(+%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := newLimiter(2, time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("a", t0); ok != want {
			t.Errorf("allow #%d = %v, want %v", i, ok, want)
		}
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Errorf("another address refused")
	}
	if ok, _ := l.allow("a", t0.Add(time.Minute)); !ok {
		t.Errorf("the next window refused")
	}
}

// TestPendingOf: the secret grouped by 4 in base32 and hex, the QR code a PNG data URI.
func TestPendingOf(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := registryapi.Enrollment{ID: "ab12", URI: "otpauth://totp/x:ann?secret=GEZDGNBVGY3TQOJQ&issuer=x",
		Secret: "GEZDGNBVGY3TQOJQ", Expires: now.Add(10 * time.Minute)}
	d, err := pendingOf(e, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Base32 != "GEZD GNBV GY3T QOJQ" || d.Hex != "31323334 35363738 3930" || d.Minutes != 10 {
		t.Errorf("pendingOf = %q, %q, %d min", d.Base32, d.Hex, d.Minutes)
	}
	if !strings.HasPrefix(string(d.QR), "data:image/png;base64,iVBORw0KGgo") {
		t.Errorf("QR = %.40s..., want a PNG data URI", d.QR)
	}
}

// TestPagesLabelled: every page parses, and every visible input of every form has a label.
func TestPagesLabelled(t *testing.T) {
	t.Parallel()
	p, err := New(Options{Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pageNames {
		var b strings.Builder
		s := &signedIn{Session: Session{User: "ann", CSRF: "tok"}}
		var data any
		switch name {
		case "signin", "mailcode":
			data, s = signinData{Mail: true, Code: true, OIDC: true, User: "ann"}, nil
		case "tokens":
			data = tokensData{HasActive: true, Tokens: []Token{{ID: "t1", Name: "phone", State: "active"}, {ID: "t2", Name: "new", State: "pending"}}}
		case "new":
			data = newTokenData{Proof: true}
		case "pending":
			data, _ = pendingOf(registryapi.Enrollment{ID: "t2", URI: "otpauth://totp/x:ann?secret=GEZDGNBVGY3TQOJQ", Secret: "GEZDGNBVGY3TQOJQ"}, time.Now())
		case "active":
			data = activeData{ID: "t1", Active: 1, Total: 2, Backup: backupOf([]string{"aaaa-bbbb"}, "tok")}
		case "backup":
			data = backupOf([]string{"aaaa-bbbb"}, "tok")
		case "admin":
			data = Overview{Users: []registryapi.User{{Name: "ann", Scopes: []string{"a", "b"}}}, Nodes: []registryapi.Node{{Name: "n1", LagMS: 12}},
				Audit: []AuditEntry{{Seq: 1, Action: "user.create"}}}
		case "continue":
			data = "/portal/tokens"
		}
		v := view{Site: "S", Title: name, S: s, Data: data, CSRF: "tok"}
		if s != nil {
			v.CSRF = s.CSRF
		}
		if err := p.pages[name].Execute(&b, v); err != nil {
			t.Fatalf("page %s: %v", name, err)
		}
		out := b.String()
		if strings.Contains(out, "<script>") || strings.Contains(out, "style=") || strings.Contains(out, "ZgotmplZ") {
			t.Errorf("page %s: inline script or style, or an unsafe URL:\n%s", name, out)
		}
		for _, m := range regexp.MustCompile(`<input id="([^"]+)"`).FindAllStringSubmatch(out, -1) {
			if !strings.Contains(out, `<label for="`+m[1]+`"`) {
				t.Errorf("page %s: input #%s has no label", name, m[1])
			}
		}
		forms := strings.Count(out, "<form ")
		if n := strings.Count(out, `name="csrf" value="tok"`); n != forms {
			t.Errorf("page %s: %d forms, %d with the CSRF token", name, forms, n)
		}
		for _, want := range []string{`<main id="content">`, `<h1>S</h1>`, `<footer id="contact">`} {
			if !strings.Contains(out, want) {
				t.Errorf("page %s has no %s", name, want)
			}
		}
	}
}
