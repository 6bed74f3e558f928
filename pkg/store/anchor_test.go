package store

import (
	"testing"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

func TestKeepAnchor(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	stage(t, db, 4, []Change{{Key: "t/alice/a", Value: tokValue(t, "alice", "a")}})
	for _, tc := range []struct {
		name string
		in   syncframe.Anchor
		want syncframe.Anchor
	}{
		{"first", syncframe.Anchor{Seq: 5, Hash: "05"}, syncframe.Anchor{Seq: 5, Hash: "05"}},
		{"later", syncframe.Anchor{Seq: 9, Hash: "09"}, syncframe.Anchor{Seq: 9, Hash: "09"}},
		{"earlier is ignored", syncframe.Anchor{Seq: 3, Hash: "03"}, syncframe.Anchor{Seq: 9, Hash: "09"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := db.KeepAnchor(tc.in)
			if err != nil || m.Audit == nil || *m.Audit != tc.want {
				t.Fatalf("KeepAnchor(%+v) = %+v, %v; want %+v", tc.in, m.Audit, err, tc.want)
			}
			if got, _ := db.Meta(); got.Audit == nil || *got.Audit != tc.want || got.Revision != 4 {
				t.Errorf("meta after KeepAnchor(%+v) = %+v", tc.in, got)
			}
		})
	}
	// A full resync replaces the records and keeps what the node has seen.
	stage(t, db, 7, []Change{{Key: "t/alice/b", Value: tokValue(t, "alice", "b")}})
	if got, _ := db.Meta(); got.Audit == nil || got.Audit.Seq != 9 || got.Revision != 7 {
		t.Errorf("meta after a resync = %+v, want the anchor at 9 kept", got)
	}
}
