package token

import (
	"testing"
	"time"
)

// TestFailures: free failures, a doubling back-off up to the maximum, and a lockout that no wait
// ends.
func TestFailures(t *testing.T) {
	t.Parallel()
	l := Limits{FreeFailures: 2, InitialBackoff: 30 * time.Second, MaxBackoff: 2 * time.Minute, LockoutAfter: 6}
	now := time.Unix(1_700_000_000, 0)
	wantWaits := []time.Duration{0, 0, 30 * time.Second, time.Minute, 2 * time.Minute, 2 * time.Minute}
	var f Failures
	for i, want := range wantWaits {
		var d time.Duration
		f, d = f.Fail(now, l)
		if d != want || f.Count != i+1 {
			t.Errorf("failure %d: Fail = count %d, wait %v; want %d, %v", i+1, f.Count, d, i+1, want)
		}
		if forGood, wait := f.Locked(now, l); forGood != (i+1 >= l.LockoutAfter) || (!forGood && wait != want) {
			t.Errorf("failure %d: Locked = %v, %v", i+1, forGood, wait)
		}
	}
	if forGood, _ := f.Locked(now.Add(365*24*time.Hour), l); !forGood {
		t.Errorf("Locked a year after %d failures = false, want true (only an admin unlocks)", f.Count)
	}
	if forGood, wait := (Failures{Count: 3, Until: now}).Locked(now, l); forGood || wait != 0 {
		t.Errorf("Locked at the end of a back-off = %v, %v; want free", forGood, wait)
	}
}
