package registry

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// checkNotice fails unless msgs is exactly one notice to addr whose subject holds subject,
// naming administrator alice-admin and every string of want, and holding none of secrets.
func checkNotice(t *testing.T, msgs []mail.Message, addr, subject string, want, secrets []string) {
	t.Helper()
	checkNoticeBy(t, msgs, addr, subject, "administrator alice-admin", want, secrets)
}

// checkNoticeBy is checkNotice of a change made by by.
func checkNoticeBy(t *testing.T, msgs []mail.Message, addr, subject, by string, want, secrets []string) {
	t.Helper()
	if len(msgs) != 1 {
		t.Fatalf("notices = %+v, want exactly one %q to %s", msgs, subject, addr)
	}
	m := msgs[0]
	if m.To != addr || !strings.Contains(m.Subject, subject) {
		t.Errorf("notice to %s about %q, want to %s about %q", m.To, m.Subject, addr, subject)
	}
	for _, w := range append([]string{"By:   " + by}, want...) {
		if !strings.Contains(m.Body, w) {
			t.Errorf("notice %q has no %q:\n%s", m.Subject, w, m.Body)
		}
	}
	noSecret(t, m, secrets...)
}

// noSecret fails if m holds a secret (base32, as given and lower-case), a code or an otpauth URI.
func noSecret(t *testing.T, m mail.Message, secrets ...string) {
	t.Helper()
	text := m.Subject + "\n" + m.Body
	if strings.Contains(text, "otpauth") {
		t.Errorf("notice %q holds an otpauth URI:\n%s", m.Subject, m.Body)
	}
	for _, s := range secrets {
		if strings.Contains(text, s) || strings.Contains(text, strings.ToLower(s)) {
			t.Errorf("notice %q holds the secret %s:\n%s", m.Subject, s, m.Body)
		}
	}
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return totp.EncodeSecret(b)
}

// hexSecret is a base32 secret in hex, as totp enroll also prints it.
func hexSecret(t *testing.T, b32 string) string {
	t.Helper()
	b, err := totp.DecodeSecret(b32)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestAdminTokenChangesNotify(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	secret := randomSecret(t)
	var ti registryapi.AddedToken
	e.mustAdmin(201, "POST", "/v1/admin/users/ann/tokens", map[string]any{"name": "phone", "secret": secret}, &ti)
	var pending registryapi.AddedToken
	e.mustAdmin(201, "POST", "/v1/admin/users/ann/tokens", map[string]any{"name": "new", "state": "pending"}, &pending)
	e.box.take()
	path := "/v1/admin/users/ann/tokens/" + ti.ID
	tests := []struct {
		name    string
		path    string
		body    map[string]any
		status  int
		subject string   // "": no notice
		want    []string // in the notice's body
	}{
		{name: "disable", path: path, body: map[string]any{"state": "disabled"}, status: 200,
			subject: "token disabled", want: []string{`"phone" (id ` + ti.ID + ")", "was disabled", "no longer work"}},
		{name: "disable again changes nothing", path: path, body: map[string]any{"state": "disabled"}, status: 200},
		{name: "enable", path: path, body: map[string]any{"state": "active"}, status: 200,
			subject: "token enabled", want: []string{`"phone" (id ` + ti.ID + ")", "was enabled", "work for logins again"}},
		{name: "rename", path: path, body: map[string]any{"name": "old phone"}, status: 200,
			subject: "token renamed", want: []string{`"phone" (id ` + ti.ID + `) was renamed to "old phone"`}},
		{name: "disable and rename: one notice", path: path, body: map[string]any{"state": "disabled", "name": "lost phone"}, status: 200,
			subject: "token disabled", want: []string{`"old phone" (id ` + ti.ID + ") was disabled", `renamed to "lost phone"`}},
		{name: "same state and name", path: path, body: map[string]any{"state": "disabled", "name": "lost phone"}, status: 200},
		{name: "a pending token cannot be enabled", path: "/v1/admin/users/ann/tokens/" + pending.ID, body: map[string]any{"state": "active"}, status: 409},
		{name: "bad state", path: path, body: map[string]any{"state": "pending"}, status: 400},
		{name: "unknown token", path: "/v1/admin/users/ann/tokens/nope", body: map[string]any{"state": "disabled"}, status: 404},
		{name: "a pending token cannot be disabled either", path: "/v1/admin/users/ann/tokens/" + pending.ID, body: map[string]any{"state": "disabled"}, status: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.mustAdmin(tt.status, "PATCH", tt.path, tt.body, nil)
			msgs := e.box.take()
			if tt.subject == "" {
				if len(msgs) != 0 {
					t.Errorf("PATCH %v = %d with notices %+v, want none", tt.body, tt.status, msgs)
				}
				return
			}
			checkNotice(t, msgs, "ann@example.org", tt.subject, tt.want, []string{secret, hexSecret(t, secret)})
		})
	}
}

func TestImportCSVNotifiesEachUserOnce(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "bob", "mail": "bob@example.org", "scopes": []string{"alpha"}}, nil)
	e.addUser("cat", "alpha") // no mail address
	ann := []string{randomSecret(t), randomSecret(t), randomSecret(t)}
	bob, cat, filler := randomSecret(t), randomSecret(t), randomSecret(t)
	// ann's tokens span two chunks: one notice all the same. The filler users are created by
	// the import, without a mail address.
	var csv strings.Builder
	fmt.Fprintf(&csv, "ann,%s,phone\nbob,%s\nann,%s,laptop\ncat,%s\n", ann[0], bob, ann[1], cat)
	for i := range tokenimport.DefaultChunk {
		fmt.Fprintf(&csv, "filler%d,%s\n", i, filler)
	}
	fmt.Fprintf(&csv, "ann,%s,yubikey\n", ann[2])
	secrets := append([]string{bob, cat, filler}, ann...)

	var rep ImportReport
	e.mustAdmin(200, "POST", "/v1/admin/import/csv?scope=alpha", csv.String(), &rep)
	if rep.Added != 5+tokenimport.DefaultChunk || rep.Revisions != 2 {
		t.Fatalf("import = %+v, want %d added in 2 revisions", rep, 5+tokenimport.DefaultChunk)
	}
	byUser := map[string][]mail.Message{}
	msgs := e.box.take()
	for _, m := range msgs {
		byUser[m.To] = append(byUser[m.To], m)
	}
	if len(msgs) != 2 {
		t.Errorf("%d notices for the import, want 2 (ann and bob; cat and the new users have no address): %+v", len(msgs), msgs)
	}
	var list []token.Info
	e.mustAdmin(200, "GET", "/v1/admin/users/ann/tokens", nil, &list)
	want := []string{"3 tokens were added to your account by an import"}
	for _, tok := range list {
		want = append(want, fmt.Sprintf("%q (id %s, active)", tok.Name, tok.ID))
	}
	checkNotice(t, byUser["ann@example.org"], "ann@example.org", "new tokens added", want, secrets)
	e.mustAdmin(200, "GET", "/v1/admin/users/bob/tokens", nil, &list)
	if len(list) != 1 {
		t.Fatalf("bob has %d tokens, want 1", len(list))
	}
	checkNotice(t, byUser["bob@example.org"], "bob@example.org", "new token added",
		[]string{fmt.Sprintf(`A token %q (id %s, active) was added to your account by an import.`, "imported", list[0].ID)}, secrets)

	t.Run("again: duplicates, no notice", func(t *testing.T) {
		e.mustAdmin(200, "POST", "/v1/admin/import/csv?scope=alpha", csv.String(), &rep)
		if rep.Added != 0 {
			t.Fatalf("second import = %+v, want nothing added", rep)
		}
		if msgs := e.box.take(); len(msgs) != 0 {
			t.Errorf("notices for an import that added nothing: %+v", msgs)
		}
	})
	t.Run("refused import, no notice", func(t *testing.T) {
		e.mustAdmin(400, "POST", "/v1/admin/import/csv", "ann,"+randomSecret(t)+"\ndan,not base32!\n", nil)
		if msgs := e.box.take(); len(msgs) != 0 {
			t.Errorf("notices for a refused import: %+v", msgs)
		}
	})
}

func TestImportCSVNamesManyTokens(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	var csv strings.Builder
	for i := range maxListed + 2 {
		fmt.Fprintf(&csv, "ann,%s,t%02d\n", randomSecret(t), i)
	}
	e.mustAdmin(200, "POST", "/v1/admin/import/csv", csv.String(), nil)
	msgs := e.box.take()
	checkNotice(t, msgs, "ann@example.org", "new tokens added",
		[]string{fmt.Sprintf("%d tokens were added", maxListed+2), `"t09"`, " and 2 more."}, nil)
	if strings.Contains(msgs[0].Body, `"t10"`) {
		t.Errorf("the notice names more than %d tokens:\n%s", maxListed, msgs[0].Body)
	}
}

func TestImportGANotifies(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	const secret = "JBSWY3DPEHPK3PXP"
	file := secret + "\n\" TOTP_AUTH\n12345678\n87654321\n"
	var rep registryapi.GAResult
	e.mustAdmin(200, "POST", "/v1/admin/import/google-authenticator?user=ann", file, &rep)
	checkNotice(t, e.box.take(), "ann@example.org", "new token added",
		[]string{fmt.Sprintf(`"google-authenticator" (id %s) was added`, rep.ID), "2 scratch codes are now your backup codes"},
		[]string{secret, "12345678", "87654321"})
	e.mustAdmin(200, "POST", "/v1/admin/import/google-authenticator?user=ann", file, &rep)
	if msgs := e.box.take(); !rep.Already || len(msgs) != 0 {
		t.Errorf("second import = %+v with notices %+v, want already and none", rep, msgs)
	}
}

func TestDeleteUserNotifies(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	ti := e.addToken("ann")
	var codes struct{ Codes []string }
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/backup-codes", nil, &codes)
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "dan", "mail": "dan@example.org", "scopes": []string{"alpha"}}, nil)
	e.box.take()

	e.mustAdmin(200, "DELETE", "/v1/admin/users/ann", nil, nil)
	checkNotice(t, e.box.take(), "ann@example.org", "second factor removed",
		[]string{"removed from the second factor registry", "tokens (1)", "backup codes (10)"},
		append([]string{ti.Secret, hexSecret(t, ti.Secret)}, codes.Codes...))

	e.mustAdmin(200, "DELETE", "/v1/admin/users/dan", nil, nil)
	if msgs := e.box.take(); len(msgs) != 0 {
		t.Errorf("notices for deleting a user without a second factor: %+v", msgs)
	}
	e.mustAdmin(404, "DELETE", "/v1/admin/users/ann", nil, nil)
	if msgs := e.box.take(); len(msgs) != 0 {
		t.Errorf("notices for deleting a missing user: %+v", msgs)
	}
}
