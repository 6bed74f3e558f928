//go:build linux

package sync

import (
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestRemovedLastTokenNoGrace: on a node in enrollment grace, a user whose last token the
// registry removed is denied (the enrolled mark reaches the node with the removal), and an
// administrator's reset gives grace back.
func TestRemovedLastTokenNoGrace(t *testing.T) {
	needRoot(t)
	c := pamtest.NewCA(t, pamtest.PrivateDir(t), "ca")
	r := startRegistry(t, c, regOptions{})
	grace := "mode = \"grace\"\ngrace_until = " + time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339)
	n := newNode(t, r, nodeOptions{Policy: grace})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	if res := n.login(user, ""); res.Code != pamtest.Success {
		t.Fatalf("login of a user without a token, in grace = %s, want PAM_SUCCESS", pamtest.Name(res.Code))
	}
	tok, _ := r.addToken(user, "phone")
	if _, err := r.admin.RemoveToken(ctx(t), user, tok.ID); err != nil {
		t.Fatal(err)
	}
	n.waitRev(r.rev(), 10*time.Second)
	res := n.login(user, "")
	if res.Code == pamtest.Success || !strings.Contains(strings.Join(res.Errors, " "), "no active two-factor token any more") {
		t.Errorf("login after the last token was removed, in grace = %s, told %q; want a denial", pamtest.Name(res.Code), res.Errors)
	}
	if _, err := r.admin.Reset(ctx(t), user); err != nil {
		t.Fatal(err)
	}
	n.waitRev(r.rev(), 10*time.Second)
	if res := n.login(user, ""); res.Code != pamtest.Success {
		t.Errorf("login after a reset, in grace = %s, want PAM_SUCCESS (grace again)", pamtest.Name(res.Code))
	}
}
