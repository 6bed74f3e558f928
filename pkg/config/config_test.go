package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExampleParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "pam_totp.conf.example"))
	if err != nil {
		t.Fatal(err)
	}
	c, warnings, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(pam_totp.conf.example) error: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("Parse(pam_totp.conf.example) warnings: %v", warnings)
	}
	// The example documents the defaults: parsing it must give exactly Default().
	want := Default()
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Mode != want.Mode || c.Window != want.Window || c.Store != want.Store ||
		c.RateLimit != want.RateLimit || c.Prompt != want.Prompt || c.Issuer != want.Issuer ||
		c.SkewHintSteps != want.SkewHintSteps || c.SSHGrace != want.SSHGrace ||
		c.SudoFreshness != want.SudoFreshness || c.PasswordAndCode != want.PasswordAndCode ||
		c.EnrollAtLogin != want.EnrollAtLogin ||
		!reflect.DeepEqual(c.Sync, want.Sync) {
		t.Errorf("example = %+v\nwant defaults %+v", c, want)
	}
	// Every key of the defaults is named in the example, so it cannot fall behind the code.
	for _, key := range []string{"mode", "grace_until", "exempt_networks", "exempt_groups", "exempt_users",
		"window", "skew_hint_steps", "prompt", "password_and_code", "ssh_grace", "sudo_freshness",
		"contact", "issuer", "dir", "open_timeout", "free_failures", "initial_backoff",
		"max_backoff", "lockout_after", "registry", "ca_file", "credential_file", "client_cert",
		"client_key", "metrics_listen", "max_offline", "offline", "bus", "enroll_at_login"} {
		if !strings.Contains(string(data), key+" =") {
			t.Errorf("pam_totp.conf.example does not document %q", key)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantErr string
		warn    string
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty is defaults", in: "", check: func(t *testing.T, c *Config) {
			if c.Mode != ModeEnforce || c.Window != 1 {
				t.Errorf("got mode %q window %d", c.Mode, c.Window)
			}
		}},
		{name: "unknown key warns", in: "bogus = 1\n[policy.sudo]\ntypo = 2\n", warn: "policy.sudo.typo"},
		{name: "bad mode", in: `mode = "maybe"`, wantErr: "must be enforce, grace or off"},
		{name: "grace needs deadline", in: `mode = "grace"`, wantErr: "needs grace_until"},
		{name: "window too wide", in: `window = 4`, wantErr: "window 4"},
		{name: "negative window", in: `window = -1`, wantErr: "window -1"},
		{name: "exempt everything", in: `exempt_networks = ["0.0.0.0/0"]`, wantErr: "exempts every address"},
		{name: "exempt everything v6", in: `exempt_networks = ["::/0"]`, wantErr: "exempts every address"},
		{name: "bad cidr", in: `exempt_networks = ["10.0.0.0/33"]`, wantErr: "not a CIDR"},
		{name: "lockout above NIST", in: "[rate_limit]\nlockout_after = 100\n", wantErr: "at most 50"},
		{name: "lockout under free", in: "[rate_limit]\nfree_failures = 5\nlockout_after = 5\n", wantErr: "above free_failures"},
		{name: "relative store", in: "[store]\ndir = \"var/lib\"\n", wantErr: "absolute"},
		{name: "timeout tiny", in: "[store]\nopen_timeout = \"1ms\"\n", wantErr: "open_timeout"},
		{name: "bad duration", in: `ssh_grace = "forever"`, wantErr: "forever"},
		{name: "grace too long", in: `ssh_grace = "48h"`, wantErr: "ssh_grace"},
		{name: "freshness too long", in: `sudo_freshness = "2h"`, wantErr: "sudo_freshness"},
		{name: "empty prompt", in: `prompt = "  "`, wantErr: "prompt"},
		{name: "bad section value", in: "[policy.sudo]\nmode = \"nope\"\n", wantErr: "[policy.sudo]"},
		{name: "wrong type", in: `window = "one"`, wantErr: "window"},
		{name: "bad offline", in: "[sync]\noffline = \"maybe\"\n", wantErr: "sync.offline"},
		{name: "registry not a URL", in: "[sync]\nregistry = \"registry:8443\"\n", wantErr: "sync.registry"},
		{name: "registry with path", in: "[sync]\nregistry = \"https://r.example/x\"\n", wantErr: "sync.registry"},
		{name: "half mTLS", in: "[sync]\nregistry = \"https://r.example\"\nclient_cert = \"/c.pem\"\n", wantErr: "go together"},
		{name: "relative ca", in: "[sync]\nregistry = \"https://r.example\"\nca_file = \"ca.pem\"\n", wantErr: "absolute"},
		{name: "registry ok", in: "[sync]\nregistry = \"https://r.example:8443\"\nmax_offline = \"24h\"\noffline = \"deny\"\n", check: func(t *testing.T, c *Config) {
			if want := (URLs{"https://r.example:8443"}); !reflect.DeepEqual(c.Sync.Registry, want) {
				t.Errorf("sync.registry = %q, want %q", c.Sync.Registry, want)
			}
		}},
		{name: "registry list", in: "[sync]\nregistry = [\"https://a.example:8443/\", \"https://b.example:8443\"]\n", check: func(t *testing.T, c *Config) {
			if want := (URLs{"https://a.example:8443", "https://b.example:8443"}); !reflect.DeepEqual(c.Sync.Registry, want) {
				t.Errorf("sync.registry = %q, want %q", c.Sync.Registry, want)
			}
		}},
		{name: "registry list with a bad URL", in: "[sync]\nregistry = [\"https://a.example\", \"b.example:8443\"]\n", wantErr: "sync.registry"},
		{name: "registry listed twice", in: "[sync]\nregistry = [\"https://a.example\", \"https://a.example/\"]\n", wantErr: "listed twice"},
		{name: "registry not a string", in: "[sync]\nregistry = 8443\n", wantErr: "want a URL"},
		{name: "section overrides only what it names", in: `
exempt_networks = ["10.0.0.0/8"]
ssh_grace = "1h"
[policy.sudo]
sudo_freshness = "5m"
exempt_networks = []
`, check: func(t *testing.T, c *Config) {
			s, err := c.For("sudo", "")
			if err != nil {
				t.Fatal(err)
			}
			if s.SudoFreshness != 5*time.Minute || s.SSHGrace != time.Hour {
				t.Errorf("For(sudo) = freshness %s grace %s, want 5m and 1h", s.SudoFreshness, s.SSHGrace)
			}
			if _, ok := s.ExemptAddr("10.1.1.1"); ok {
				t.Errorf("For(sudo).ExemptAddr(10.1.1.1) = true, want false (section cleared it)")
			}
			top, _ := c.For("sshd", "")
			if _, ok := top.ExemptAddr("10.1.1.1"); !ok {
				t.Errorf("For(sshd).ExemptAddr(10.1.1.1) = false, want true (top level)")
			}
			if top.SudoFreshness != 0 {
				t.Errorf("For(sshd).SudoFreshness = %s, want 0", top.SudoFreshness)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, warnings, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.in, err)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(warnings, "\n"), tt.warn) {
				t.Errorf("Parse(%q) warnings = %v, want one naming %q", tt.in, warnings, tt.warn)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestFor(t *testing.T) {
	t.Parallel()
	c, _, err := Parse([]byte("[policy.sshd]\nssh_grace = \"8h\"\n[policy.strict]\nwindow = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		service, policy string
		wantWindow      int
		wantGrace       time.Duration
		wantErr         bool
	}{
		{"sshd", "", 1, 8 * time.Hour, false},
		{"sudo", "", 1, 0, false},
		{"sshd", "strict", 0, 0, false},
		{"sshd", "missing", 0, 0, true},
	}
	for _, tt := range tests {
		p, err := c.For(tt.service, tt.policy)
		if (err != nil) != tt.wantErr {
			t.Errorf("For(%q, %q) error = %v, want error %v", tt.service, tt.policy, err, tt.wantErr)
			continue
		}
		if err == nil && (p.Window != tt.wantWindow || p.SSHGrace != tt.wantGrace) {
			t.Errorf("For(%q, %q) = window %d grace %s, want %d %s", tt.service, tt.policy, p.Window, p.SSHGrace, tt.wantWindow, tt.wantGrace)
		}
	}
}

func TestExemptAddr(t *testing.T) {
	t.Parallel()
	c, _, err := Parse([]byte(`exempt_networks = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rhost string
		want  bool
	}{
		{"10.2.3.4", true}, {"11.0.0.1", false}, {"192.0.2.7", true}, {"192.0.2.8", false},
		{"::ffff:10.0.0.1", true}, {"2001:db8::1", true}, {"2001:db9::1", false},
		{"", false}, {"login1.example.org", false}, {"10.0.0.1 ", true}, {"10.0.0.1/8", false},
	}
	for _, tt := range tests {
		if _, got := c.ExemptAddr(tt.rhost); got != tt.want {
			t.Errorf("ExemptAddr(%q) = %v, want %v", tt.rhost, got, tt.want)
		}
	}
}

func TestLoadRefusesUnsafeFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership checks need root (files must be root-owned)")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	if err := os.WriteFile(good, []byte("window = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(good); err != nil {
		t.Fatalf("Load(good) = %v", err)
	}
	writable := filepath.Join(dir, "writable.conf")
	os.WriteFile(writable, []byte("window = 1\n"), 0o644)
	os.Chmod(writable, 0o666)
	link := filepath.Join(dir, "link.conf")
	os.Symlink(good, link)
	notRoot := filepath.Join(dir, "nobody.conf")
	os.WriteFile(notRoot, []byte("window = 1\n"), 0o644)
	os.Chown(notRoot, 65534, 65534)
	for name, path := range map[string]string{"world-writable": writable, "symlink": link,
		"not root-owned": notRoot, "missing": filepath.Join(dir, "none.conf"), "directory": dir} {
		if _, _, err := Load(path); err == nil {
			t.Errorf("Load(%s) = nil error, want refusal", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile(filepath.Join("..", "..", "pam_totp.conf.example"))
	f.Add(data)
	f.Add([]byte("[policy.sudo]\nsudo_freshness = \"5m\"\n"))
	f.Add([]byte(`exempt_networks = ["10.0.0.0/8"]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, _, err := Parse(in)
		if err != nil {
			return
		}
		// Whatever parses must satisfy Validate's bounds in every section.
		for _, p := range append([]Policy{c.Policy}, values(c.Policies)...) {
			if p.Window < 0 || p.Window > 3 || p.SSHGrace < 0 || p.SSHGrace > 24*time.Hour {
				t.Fatalf("Parse accepted out-of-range policy %+v", p)
			}
			if _, ok := p.ExemptAddr("1.2.3.4"); ok && len(p.ExemptNetworks) == 0 {
				t.Fatalf("ExemptAddr true with no exempt networks")
			}
		}
	})
}

func values(m map[string]Policy) []Policy {
	out := make([]Policy, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

// TestCache: a cached config is read again only when its file changed, and after Clear.
func TestCache(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pam_totp.conf")
	write := func(issuer string) {
		if err := os.WriteFile(path, []byte("issuer = \""+issuer+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	var c Cache
	a, _, err := c.Load(path)
	if err != nil || a.Issuer != "one" {
		t.Fatalf("Load = %v, %v", a, err)
	}
	if b, _, _ := c.Load(path); b != a {
		t.Error("an unchanged file was parsed again")
	}
	write("three") // another size: a change even within one timestamp tick
	if b, _, _ := c.Load(path); b == a || b.Issuer != "three" {
		t.Errorf("after a change Load = %q, want the new file", b.Issuer)
	}
	b, _, _ := c.Load(path)
	c.Clear()
	if d, _, _ := c.Load(path); d == b {
		t.Error("Clear kept the config")
	}
}

func TestParseURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want URLs
	}{
		{in: "", want: nil},
		{in: "https://a:1", want: URLs{"https://a:1"}},
		{in: " https://a:1/, ,https://b:2 ", want: URLs{"https://a:1", "https://b:2"}},
	}
	for _, tt := range tests {
		if got := ParseURLs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCheck: a typo is a warning at load (the login path goes on with the defaults) and an error
// for --check-config, with its position and the nearest valid key; a value that weakens security
// is an error for both.
func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, text string
		wantWarn   string // Load's warning
		wantErr    string // Check's error ("" passes)
		wantLoad   bool   // Load fails too
	}{
		{name: "clean", text: "window = 1\n"},
		{name: "typo", text: "# policy\nmode = \"enforce\"\n\nwindoww = 2\n",
			wantWarn: `unknown key "windoww" at ` + dir + `/typo.conf:4:1 ignored; did you mean "window"?`,
			wantErr:  `unknown key "windoww" at ` + dir + `/typo.conf:4:1; did you mean "window"?`},
		{name: "typo in a policy section", text: "[policy.sudo]\n  sudo_freshnes = \"5m\"\n",
			wantWarn: `unknown key "policy.sudo.sudo_freshnes" at ` + dir + `/typo in a policy section.conf:2:3 ignored; did you mean "sudo_freshness"?`,
			wantErr:  `did you mean "sudo_freshness"?`},
		{name: "unknown section", text: "[rate_limits]\nlockout_after = 5\n",
			wantWarn: `unknown key "rate_limits" at ` + dir + `/unknown section.conf:1:1 ignored; did you mean "rate_limit"?`,
			wantErr:  `unknown key "rate_limits"`},
		{name: "weak value", text: "window = 50\nwindoww = 1\n", wantErr: "window", wantLoad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tt.name+".conf")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, warnings, err := Load(path)
			if (err != nil) != tt.wantLoad || (tt.wantWarn != "" && !slices.Contains(warnings, tt.wantWarn)) {
				t.Errorf("Load(%q) = %q, %v; want warning %q, error %v", tt.text, warnings, err, tt.wantWarn, tt.wantLoad)
			}
			c, err := Check(path)
			switch {
			case tt.wantErr == "" && (err != nil || c == nil):
				t.Errorf("Check(%q) = %v, want OK", tt.text, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check(%q) = %v, want an error with %q", tt.text, err, tt.wantErr)
			}
		})
	}
}
