package registry

import (
	"context"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

// TestConverge runs every admin change whose desired state may already hold twice: the first
// changes (a revision and an audit record), the second answers "changed": false and writes
// nothing, not even an audit record. A request that asks for something else than what exists is
// refused, unchanged too.
func TestConverge(t *testing.T) {
	t.Parallel()
	t.Run("bbolt", func(t *testing.T) {
		t.Parallel()
		testConverge(t, newEnv(t, envOptions{}))
	})
	t.Run("etcd", func(t *testing.T) {
		t.Parallel()
		_, _, st := etcdStore(t, "/converge/")
		testConverge(t, newEnv(t, envOptions{store: st}))
	})
}

func testConverge(t *testing.T, e *env) {
	e.addUser("bob", "c1")
	tok := e.addToken("bob")
	records := func() int {
		recs, err := e.srv.Audit(context.Background(), 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	user := map[string]any{"name": "ann", "mail": "ann@example.org", "scopes": []string{"b", "a"}}
	tokPath := "/v1/admin/users/bob/tokens/" + tok.ID
	steps := []struct {
		name         string
		method, path string
		body         any
		status       int // of the first request; the second answers 200
	}{
		{"add user", "POST", "/v1/admin/users", user, 201},
		{"set mail", "PATCH", "/v1/admin/users/ann", map[string]any{"mail": "ann@example.com"}, 200},
		{"set scopes", "PATCH", "/v1/admin/users/ann", map[string]any{"scopes": []string{"c"}}, 200},
		{"disable token", "PATCH", tokPath, map[string]any{"state": "disabled"}, 200},
		{"enable token", "PATCH", tokPath, map[string]any{"state": "active"}, 200},
		{"rename token", "PATCH", tokPath, map[string]any{"name": "laptop"}, 200},
		{"add node", "POST", "/v1/admin/nodes", map[string]any{"name": "login1", "scope": "c1"}, 201},
	}
	for _, st := range steps {
		rev, n := e.store.Rev(), records()
		var first, second registryapi.Outcome
		e.mustAdmin(st.status, st.method, st.path, st.body, &first)
		if !first.Changed || e.store.Rev() == rev || records() != n+1 {
			t.Errorf("%s: changed %v, revision %d -> %d, audit records %d -> %d; want a change, a revision and a record",
				st.name, first.Changed, rev, e.store.Rev(), n, records())
		}
		rev, n = e.store.Rev(), records()
		e.mustAdmin(200, st.method, st.path, st.body, &second)
		if second.Changed || e.store.Rev() != rev || records() != n {
			t.Errorf("%s again: changed %v, revision %d -> %d, audit records %d -> %d; want no change at all",
				st.name, second.Changed, rev, e.store.Rev(), n, records())
		}
	}

	// Not locked: nothing to unlock, nothing written.
	rev, n := e.store.Rev(), records()
	var u registryapi.Unlocked
	e.mustAdmin(200, "POST", "/v1/admin/users/bob/unlock", nil, &u)
	if u.Changed || e.store.Rev() != rev || records() != n {
		t.Errorf("unlock of a user not locked = %+v, revision %d -> %d; want unchanged", u, rev, e.store.Rev())
	}

	// Another mail or scope, or another node scope, is a conflict that says what differs.
	var refusal struct{ Error string }
	if st := e.admin("POST", "/v1/admin/users", map[string]any{"name": "ann", "scopes": []string{"c"}}, &refusal); st != 409 ||
		refusal.Error != `user "ann" exists with other attributes (mail ann@example.com, not none); change them with user set` {
		t.Errorf("add of ann with another mail = %d %q, want 409 naming the mail", st, refusal.Error)
	}
	if st := e.admin("POST", "/v1/admin/nodes", map[string]any{"name": "login1", "scope": "c2"}, &refusal); st != 409 ||
		refusal.Error != `node "login1" exists in scope "c1", not "c2"; remove it first to add it anew` {
		t.Errorf("add of login1 in another scope = %d %q, want 409", st, refusal.Error)
	}
	if e.store.Rev() != rev || records() != n {
		t.Errorf("refused adds wrote: revision %d -> %d, audit records %d -> %d", rev, e.store.Rev(), n, records())
	}
}
