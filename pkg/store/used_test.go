package store

import (
	"slices"
	"testing"
	"time"
)

func TestForEachBackupUsed(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	s := NewState(o)
	now := time.Unix(1700000000, 0).UTC()
	type mark struct {
		user, id string
		at       time.Time
	}
	collect := func() []mark {
		t.Helper()
		var got []mark
		if err := s.View(func(x *StateTx) error {
			return x.ForEachBackupUsed(func(user, id string, at time.Time) error {
				got = append(got, mark{user, id, at})
				return nil
			})
		}); err != nil {
			t.Fatalf("View(ForEachBackupUsed) = %v", err)
		}
		return got
	}
	if got := collect(); len(got) != 0 {
		t.Errorf("ForEachBackupUsed on a missing state.db = %v, want none", got)
	}
	if err := s.Update(func(x *StateTx) error {
		if err := x.UseBackup("bob", "b2", now.Add(time.Minute)); err != nil {
			return err
		}
		if err := x.SetLastStep("ann", "t1", 7); err != nil { // another bucket: not a mark
			return err
		}
		return x.UseBackup("ann", "a1", now)
	}); err != nil {
		t.Fatal(err)
	}
	want := []mark{{"ann", "a1", now}, {"bob", "b2", now.Add(time.Minute)}}
	if got := collect(); !slices.Equal(got, want) {
		t.Errorf("ForEachBackupUsed = %v, want %v", got, want)
	}
}

func TestHasBackupCode(t *testing.T) {
	t.Parallel()
	db := NewTokens(tempStore(t))
	stage(t, db, 3, []Change{{Key: "b/ann/a1", Value: backupValue(t, "ann", "a1")}})
	tests := []struct {
		name, user, id string
		want           bool
	}{
		{"present", "ann", "a1", true},
		{"other id", "ann", "a2", false},
		{"other user", "bob", "a1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bool
			if err := db.View(func(x *TokensTx) error { got = x.HasBackupCode(tt.user, tt.id); return nil }); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("HasBackupCode(%q, %q) = %v, want %v", tt.user, tt.id, got, tt.want)
			}
		})
	}
}
