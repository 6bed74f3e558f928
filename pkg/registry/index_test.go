package registry

import (
	"testing"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// TestIndexCountAt: the count of a scope at an earlier revision takes back the logged changes
// after it (puts, deletes, moves between scopes), and says when the log cannot.
func TestIndexCountAt(t *testing.T) {
	v := []byte("v")
	x := newIndex(10, map[string]*syncframe.Digest{})
	x.apply(11, []change{
		{rev: 11, key: "t/a/1", value: v, scopes: []string{"alpha"}},
		{rev: 11, key: "t/b/1", value: v, scopes: []string{"alpha", "beta"}},
	})
	x.apply(12, []change{{rev: 12, key: "t/c/1", value: v, scopes: []string{"beta"}}})
	// rev 13: t/a/1 moves from alpha to beta; t/b/1 is deleted.
	x.apply(13, []change{
		{rev: 13, key: "t/a/1", value: v, scopes: []string{"beta"}, prevValue: v, prevScopes: []string{"alpha"}},
		{rev: 13, key: "t/b/1", prevValue: v, prevScopes: []string{"alpha", "beta"}},
	})
	want := map[int64]map[string]int64{
		10: {"alpha": 0, "beta": 0},
		11: {"alpha": 2, "beta": 1},
		12: {"alpha": 2, "beta": 2},
		13: {"alpha": 0, "beta": 2, "gamma": 0},
	}
	for rev, scopes := range want {
		for scope, n := range scopes {
			got, state, _ := x.countAt(scope, rev)
			if state != countOK || got != n {
				t.Errorf("countAt(%s, %d) = %d (state %d), want %d", scope, rev, got, state, n)
			}
		}
	}
	if _, state, notify := x.countAt("alpha", 14); state != countTooNew || notify == nil {
		t.Errorf("countAt past the index = state %d, want countTooNew with a channel", state)
	}
	if _, state, _ := x.countAt("alpha", 9); state != countTooOld {
		t.Errorf("countAt before the log = state %d, want countTooOld", state)
	}
}
