package registry

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigExampleParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "registry.conf.example"))
	if err != nil {
		t.Fatal(err)
	}
	c, warnings, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("ParseConfig(registry.conf.example) error: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("ParseConfig(registry.conf.example) warnings: %v", warnings)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(*c, want) {
		t.Errorf("example = %+v\nwant defaults %+v", *c, want)
	}
	// Every key is documented, so the example cannot fall behind the code.
	// A section's keys are looked for after its [header].
	var check func(typ reflect.Type, text, section string)
	check = func(typ reflect.Type, text, section string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			if key == "-" {
				continue // not a key (Unknown: what the file got wrong)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				if section != "" {
					key = section + "." + key // a table in a table: [portal.oidc]
				}
				_, rest, ok := strings.Cut(text, "\n["+key+"]\n")
				if !ok {
					t.Errorf("registry.conf.example has no [%s] section", key)
					continue
				}
				check(f.Type, "\n"+rest, key)
				continue
			}
			if !strings.Contains(text, "\n"+key+" = ") {
				t.Errorf("registry.conf.example does not document %q (section %q)", key, section)
			}
		}
	}
	check(reflect.TypeOf(Config{}), string(data), "")
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	runConfigCases(t, []configCase{
		{name: "empty is defaults", in: ""},
		{name: "unknown key warns", in: "colour = 1\n", warn: "colour"},
		{name: "unknown key has its place and nearest name", in: "listen = \"127.0.0.1:1\"\nhistroy_keep = 5\n",
			warn: `unknown key "histroy_keep" at line 2:1 ignored; did you mean "history_keep"?`},
		{name: "unknown store key", in: "[store]\npath = \"/x\"\nbakend = \"etcd\"\n",
			warn: `unknown key "store.bakend" at line 3:1 ignored; did you mean "backend"?`},
		{name: "insecure warns", in: "insecure_http = true\ntls_cert = \"\"\ntls_key = \"\"\n", warn: "insecure_http"},
		{name: "tls required", in: "tls_cert = \"\"\n", wantErr: "tls_cert and tls_key"},
		{name: "relative store", in: "store = \"r.db\"\n", wantErr: "absolute"},
		{name: "key inside store dir", in: "key_file = \"/var/lib/pam-totp-registry/k\"\n", wantErr: "outside"},
		{name: "bad listen", in: "listen = \"8443\"\n", wantErr: "listen"},
		{name: "metrics on loopback", in: "metrics_listen = \"127.0.0.1:9464\"\n"},
		{name: "metrics not on loopback", in: "metrics_listen = \"0.0.0.0:9464\"\n", wantErr: "loopback"},
		{name: "http limits", in: "[http]\nread_header_timeout = \"2s\"\nmax_conns = 10\n"},
		{name: "read_timeout below read_header_timeout", in: "[http]\nread_header_timeout = \"2m\"\nread_timeout = \"1m\"\n", wantErr: "read_timeout"},
		{name: "no write timeout", in: "[http]\nwrite_timeout = \"0s\"\n", wantErr: "write_timeout"},
		{name: "max_conns 1", in: "[http]\nmax_conns = 1\n", wantErr: "max_conns"},
		{name: "history too short", in: "history_keep = 10\n", wantErr: "history_keep"},
		{name: "bookmark too fast", in: "bookmark_interval = \"10ms\"\n", wantErr: "bookmark_interval"},
		{name: "stream shorter than bookmarks", in: "stream_max = \"15s\"\n", wantErr: "twice"},
		{name: "snapshot concurrency", in: "snapshot_concurrency = 0\n", wantErr: "snapshot_concurrency"},
		{name: "not toml", in: "listen = \n", wantErr: "expected"},
		{name: "portal on", in: "[mail]\nhost = \"127.0.0.1:25\"\n[portal]\nenabled = true\nsign_in = [\"code\", \"mail\"]\n"},
		{name: "portal needs TLS", in: "insecure_http = true\n[portal]\nenabled = true\nsign_in = [\"code\"]\n", wantErr: "needs TLS"},
		{name: "portal mail sign-in needs a relay", in: "[portal]\nenabled = true\n", wantErr: "needs [mail] host"},
		{name: "portal unknown sign-in", in: "[portal]\nsign_in = [\"password\"]\n", wantErr: "sign_in \"password\""},
		{name: "portal no sign-in", in: "[portal]\nsign_in = []\n", wantErr: "at least one"},
		{name: "portal sign-in twice", in: "[portal]\nsign_in = [\"code\", \"code\"]\n", wantErr: "twice"},
		{name: "portal idle too short", in: "[portal]\nsession_idle = \"10s\"\n", wantErr: "session_idle"},
		{name: "portal max below idle", in: "[portal]\nsession_idle = \"1h\"\nsession_max = \"30m\"\n", wantErr: "session_max"},
		{name: "portal site name", in: "[portal]\nsite_name = \"\"\n", wantErr: "site_name"},
		{name: "portal public_url http", in: "[portal]\npublic_url = \"http://r.example.org\"\n", wantErr: "public_url"},
		{name: "portal oidc", in: "[portal]\nsign_in = [\"oidc\"]\n[portal.oidc]\nissuer = \"https://idp.example.org/realms/hpc\"\nclient_id = \"pam-totp\"\n"},
		{name: "portal oidc needs an issuer", in: "[portal]\nsign_in = [\"oidc\"]\n", wantErr: "issuer"},
		{name: "portal oidc unknown key", in: "[portal.oidc]\nissuer_url = \"x\"\n", warn: "portal.oidc.issuer_url"},
		{name: "portal admin group needs oidc", in: "[portal]\nadmin_group = \"hpc-admin\"\n", wantErr: "admin_group"},
		{name: "portal public_url", in: "[portal]\npublic_url = \"https://r.example.org:8443\"\n"},
	})
}

// configCase is one ParseConfig case: an error containing wantErr, or success with a warning
// containing warn and, when want is set, the store described as want.
type configCase struct {
	name, in, wantErr, warn, want string
}

func runConfigCases(t *testing.T, tests []configCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, warnings, err := ParseConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseConfig(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig(%q) error = %v", tt.in, err)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(warnings, "\n"), tt.warn) {
				t.Errorf("ParseConfig(%q) warnings = %v, want %q", tt.in, warnings, tt.warn)
			}
			if tt.want != "" && c.Store.String() != tt.want {
				t.Errorf("ParseConfig(%q).Store = %s, want %s", tt.in, c.Store, tt.want)
			}
		})
	}
}

func TestParseAdminTokens(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	tests := []struct {
		name, in string
		n        int
		wantErr  bool
	}{
		{"two", "# admins\nalice " + h + "\n\nbob " + strings.ToUpper(h) + "\n", 2, false},
		{"short hash", "alice abcd\n", 0, true},
		{"three fields", "alice " + h + " x\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := ParseAdminTokens([]byte(tt.in))
			if (err != nil) != tt.wantErr || len(toks) != tt.n {
				t.Errorf("ParseAdminTokens = %d, %v; want %d, error %v", len(toks), err, tt.n, tt.wantErr)
			}
		})
	}
}
