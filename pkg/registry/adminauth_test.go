package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

func TestParseAdminTokenFields(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	tests := []struct {
		name, line string
		want       AdminToken // Hash and Name not compared
		wantErr    string
	}{
		{name: "plain line is a full unscoped admin", line: "alice " + h, want: AdminToken{Role: RoleFull}},
		{name: "helpdesk with scopes", line: "bob " + h + " role=helpdesk scopes=c2,c1,c1",
			want: AdminToken{Role: RoleHelpdesk, Scopes: []string{"c1", "c2"}}},
		{name: "read-only expiring on a date", line: "carl " + h + " expires=2027-06-30 role=read-only",
			want: AdminToken{Role: RoleReadOnly, Expires: time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "expiry at an instant", line: "dora " + h + " expires=2027-06-30T12:00:00Z",
			want: AdminToken{Role: RoleFull, Expires: time.Date(2027, 6, 30, 12, 0, 0, 0, time.UTC)}},
		{name: "unknown role", line: "x " + h + " role=root", wantErr: `role "root"`},
		{name: "misspelt field", line: "x " + h + " scope=c1", wantErr: `unknown field "scope"`},
		{name: "field twice", line: "x " + h + " role=full role=read-only", wantErr: "role given twice"},
		{name: "empty scope", line: "x " + h + " scopes=c1,", wantErr: "scopes"},
		{name: "bad date", line: "x " + h + " expires=30.6.2027", wantErr: "expires"},
		{name: "no value", line: "x " + h + " role=", wantErr: "want KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := ParseAdminTokens([]byte(tt.line + "\n"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAdminTokens(%q) error = %v, want one with %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil || len(toks) != 1 {
				t.Fatalf("ParseAdminTokens(%q) = %v, %v", tt.line, toks, err)
			}
			got := toks[0]
			if got.Role != tt.want.Role || !slices.Equal(got.Scopes, tt.want.Scopes) || !got.Expires.Equal(tt.want.Expires) {
				t.Errorf("ParseAdminTokens(%q) = role %s scopes %v expires %v, want %s %v %v", tt.line,
					got.Role, got.Scopes, got.Expires, tt.want.Role, tt.want.Scopes, tt.want.Expires)
			}
		})
	}
}

// testLog is a log file the server's goroutines write to (a file's writes are safe for them)
// and the test reads.
type testLog struct{ f *os.File }

func newTestLog(t *testing.T) testLog {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return testLog{f}
}

func (l testLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l.f, nil)) }

func (l testLog) String() string {
	b, _ := os.ReadFile(l.f.Name())
	return string(b)
}

func adminLine(name, tok, fields string) string {
	sum := sha256.Sum256([]byte(tok))
	return name + " " + hex.EncodeToString(sum[:]) + " " + fields + "\n"
}

func TestAdminRolesAndScopes(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	logs := newTestLog(t)
	toks, err := ParseAdminTokens([]byte(adminLine("alice-admin", testAdminToken, "") +
		adminLine("reader", "tok-reader", "role=read-only") +
		adminLine("desk1", "tok-desk1", "role=helpdesk scopes=c1") +
		adminLine("full1", "tok-full1", "scopes=c1") +
		adminLine("old", "tok-old", "expires=2027-02-28")))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{opts: func(o *Options) {
		o.Admins, o.Now = toks, func() time.Time { return now }
		o.Logger = logs.logger()
	}})
	e.addUser("u1", "c1")
	e.addUser("u12", "c1", "c2")
	e.addUser("u2", "c2")
	t1 := e.addToken("u1")
	t2 := e.addToken("u2")
	e.addNode("n1", "c1")
	e.addNode("n2", "c2")

	steps := []struct {
		name, token, method, path string
		body                      any
		want                      int
	}{
		{"expired token", "tok-old", "GET", "/v1/admin/users", nil, 401},
		{"reader lists", "tok-reader", "GET", "/v1/admin/users", nil, 200},
		{"reader verifies the audit chain", "tok-reader", "GET", "/v1/admin/audit/verify", nil, 200},
		{"reader may not unlock", "tok-reader", "POST", "/v1/admin/users/u1/unlock", nil, 403},
		{"reader may not add a user", "tok-reader", "POST", "/v1/admin/users", map[string]any{"name": "r"}, 403},
		{"helpdesk unlocks in scope", "tok-desk1", "POST", "/v1/admin/users/u1/unlock", nil, 200},
		{"helpdesk gives a passcode in scope", "tok-desk1", "POST", "/v1/admin/users/u1/passcode", nil, 200},
		{"helpdesk disables a token in scope", "tok-desk1", "PATCH", "/v1/admin/users/u1/tokens/" + t1.ID,
			map[string]any{"state": "disabled"}, 200},
		{"helpdesk not out of scope", "tok-desk1", "PATCH", "/v1/admin/users/u2/tokens/" + t2.ID,
			map[string]any{"state": "disabled"}, 403},
		{"helpdesk not on a user also in another scope", "tok-desk1", "POST", "/v1/admin/users/u12/reset", nil, 403},
		{"helpdesk may not add a token", "tok-desk1", "POST", "/v1/admin/users/u1/tokens", map[string]any{}, 403},
		{"helpdesk may not add a node", "tok-desk1", "POST", "/v1/admin/nodes", map[string]any{"name": "n3", "scope": "c1"}, 403},
		{"scoped full admin reads in scope", "tok-full1", "GET", "/v1/admin/users/u1/tokens", nil, 200},
		{"scoped full admin reads not out of scope", "tok-full1", "GET", "/v1/admin/users/u2", nil, 403},
		{"scoped full admin adds a user in scope", "tok-full1", "POST", "/v1/admin/users",
			map[string]any{"name": "u1b", "scopes": []string{"c1"}}, 201},
		{"scoped full admin adds no user out of scope", "tok-full1", "POST", "/v1/admin/users",
			map[string]any{"name": "u2b", "scopes": []string{"c2"}}, 403},
		{"scoped full admin adds no unscoped user", "tok-full1", "POST", "/v1/admin/users",
			map[string]any{"name": "u0"}, 403},
		{"scoped full admin moves no user out of scope", "tok-full1", "PATCH", "/v1/admin/users/u1",
			map[string]any{"scopes": []string{"c1", "c2"}}, 403},
		{"scoped full admin removes no node out of scope", "tok-full1", "DELETE", "/v1/admin/nodes/n2", nil, 403},
		{"scoped full admin adds a node in scope", "tok-full1", "POST", "/v1/admin/nodes",
			map[string]any{"name": "n3", "scope": "c1"}, 201},
		{"scoped full admin reads no audit log", "tok-full1", "GET", "/v1/admin/audit", nil, 403},
		{"scoped full admin does not compact", "tok-full1", "POST", "/v1/admin/compact", map[string]any{}, 403},
		{"unscoped full admin does all", testAdminToken, "POST", "/v1/admin/users/u12/reset", nil, 200},
	}
	for _, st := range steps {
		if got := e.do(st.method, st.path, st.token, st.body, nil); got != st.want {
			t.Errorf("%s: %s %s = %d, want %d", st.name, st.method, st.path, got, st.want)
		}
	}

	var me registryapi.AdminIdentity
	if got := e.do("GET", "/v1/admin/whoami", "tok-desk1", nil, &me); got != 200 || me.Name != "desk1" ||
		me.Role != "helpdesk" || !slices.Equal(me.Scopes, []string{"c1"}) || me.Expires != nil {
		t.Errorf("GET /v1/admin/whoami = %d %+v, want desk1 helpdesk [c1] never expiring", got, me)
	}
	var users []registryapi.User
	e.do("GET", "/v1/admin/users", "tok-desk1", nil, &users)
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if want := []string{"u1", "u1b"}; !slices.Equal(names, want) {
		t.Errorf("users listed to a c1 helpdesk = %v, want %v", names, want)
	}
	var nodes []registryapi.Node
	e.do("GET", "/v1/admin/nodes", "tok-full1", nil, &nodes)
	if len(nodes) != 2 || nodes[0].Scope != "c1" || nodes[1].Scope != "c1" {
		t.Errorf("nodes listed to a c1 admin = %+v, want n1 and n3 of c1", nodes)
	}

	log := logs.String()
	for _, want := range []string{
		`msg="admin request refused" actor=old method=GET path=/v1/admin/users status=401`,
		`actor=reader method=POST path=/v1/admin/users/u1/unlock status=403`,
		`reason="role read-only"`,
		`actor=desk1 method=PATCH path=/v1/admin/users/u2/tokens/` + t2.ID + ` status=403`,
		`reason=scope`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, secret := range []string{"tok-reader", "tok-desk1", "tok-full1", "tok-old", testAdminToken} {
		if strings.Contains(log, secret) {
			t.Errorf("log holds the admin token %q", secret)
		}
	}
}

func TestAdminTokensReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admins")
	write := func(content string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(adminLine("alice-admin", testAdminToken, ""))
	logs := newTestLog(t)
	e := newEnv(t, envOptions{opts: func(o *Options) { o.Logger = logs.logger() }})
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.srv.watchAdmins(ctx, path, hup)

	status := func(tok string) int { return e.do("GET", "/v1/admin/users", tok, nil, nil) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10s for %s; log:\n%s", what, logs.String())
			}
		}
	}

	// A rotation by SIGHUP: the new token works, the old one no longer.
	write(adminLine("alice-admin", "rotated", ""))
	hup <- os.Interrupt
	waitFor("the rotated token to be accepted", func() bool { return status("rotated") == 200 })
	if got := status(testAdminToken); got != 401 {
		t.Errorf("old token after the rotation = %d, want 401", got)
	}
	// A bad file keeps the tokens in force, and the log says why.
	write("alice-admin abcd\n")
	hup <- os.Interrupt
	waitFor("the refused reload in the log", func() bool { return strings.Contains(logs.String(), "admin tokens not reloaded") })
	if got := status("rotated"); got != 200 {
		t.Errorf("token in force after a bad file = %d, want 200", got)
	}
	// A change found by the file watch, without a signal.
	write(adminLine("bob", "by-watch", "role=read-only"))
	waitFor("the watched file to be reloaded", func() bool { return status("by-watch") == 200 })
	if got := status("rotated"); got != 401 {
		t.Errorf("token removed from the file = %d, want 401", got)
	}
}
