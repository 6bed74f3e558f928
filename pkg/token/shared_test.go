package token

import (
	"testing"
	"time"
)

// TestClaimable: a step is granted once, only above the last one granted; the same node asking
// again for the step it holds is the same acceptance.
func TestClaimable(t *testing.T) {
	c := Claim{Step: 100, Node: "node:a"}
	tests := []struct {
		step uint64
		node string
		want bool
	}{
		{101, "node:b", true},
		{100, "node:b", false},
		{100, "node:a", true},
		{99, "node:a", false},
		{1, "node:b", false},
	}
	for _, tt := range tests {
		if got := c.Claimable(tt.step, tt.node); got != tt.want {
			t.Errorf("Claim{100, a}.Claimable(%d, %s) = %v, want %v", tt.step, tt.node, got, tt.want)
		}
	}
	if !(Claim{}).Claimable(1, "node:a") {
		t.Error("no claim yet: step 1 must be claimable")
	}
	if (Claim{}).Claimable(0, "") {
		t.Error("step 0 without a node must not be claimable")
	}
}

// TestSharedFailures: failures count after the last success only, a late report keeps the newest
// time, and a success clears only what came before it.
func TestSharedFailures(t *testing.T) {
	l := Limits{FreeFailures: 2, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, LockoutAfter: 5}
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	s := SharedFailures{User: "ann"}
	for i := range 3 {
		if !s.Fail(t0.Add(time.Duration(i)*time.Second), l) {
			t.Fatalf("failure %d not counted", i+1)
		}
	}
	if s.Count != 3 || !s.Last.Equal(t0.Add(2*time.Second)) || !s.Until.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("after 3 failures: %+v, want count 3, last t0+2s, until t0+3s", s.Failures)
	}
	if !s.Fail(t0.Add(time.Second), l) || !s.Last.Equal(t0.Add(2*time.Second)) {
		t.Errorf("a late report: %+v, want counted with last kept at t0+2s", s.Failures)
	}
	s.Clear(t0.Add(10 * time.Second))
	if s.Count != 0 || !s.Cleared.Equal(t0.Add(10*time.Second)) {
		t.Errorf("after a success: %+v cleared %v, want no failures, cleared t0+10s", s.Failures, s.Cleared)
	}
	if s.Fail(t0.Add(5*time.Second), l) {
		t.Error("a failure from before the success was counted")
	}
	s.Fail(t0.Add(20*time.Second), l)
	s.Clear(t0.Add(15 * time.Second)) // a success reported late, older than the failure
	if s.Count != 1 {
		t.Errorf("a late success cleared a newer failure: %+v", s.Failures)
	}
	s.Fail(t0.Add(time.Hour), l) // a node's clock ahead of the registry's
	s.Unlock(t0.Add(30 * time.Second))
	if s.Count != 0 || !s.Cleared.Equal(t0.Add(time.Hour)) {
		t.Errorf("after an unlock: %+v cleared %v, want nothing left, cleared at the last failure", s.Failures, s.Cleared)
	}
	if err := (&SharedFailures{User: "a\nb"}).Validate(); err == nil {
		t.Error("Validate accepted a bad user name")
	}
}

// TestMerge: a node's own failures join the cluster's: the larger count, the node's back-off on
// the cluster's count, and nothing from before the last success on either side.
func TestMerge(t *testing.T) {
	l := Limits{FreeFailures: 2, InitialBackoff: 10 * time.Second, MaxBackoff: time.Minute, LockoutAfter: 5}
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name   string
		local  Failures
		shared SharedFailures
		want   Failures
	}{
		{"nothing", Failures{}, SharedFailures{}, Failures{}},
		{"local only", Failures{Count: 2, Last: at(5)}, SharedFailures{}, Failures{Count: 2, Last: at(5)}},
		{"cluster larger: its count, node's back-off from its last", Failures{Count: 1, Last: at(5)},
			SharedFailures{Failures: Failures{Count: 4, Last: at(8)}},
			Failures{Count: 4, Last: at(8), Until: at(8 + 20)}},
		{"local larger", Failures{Count: 4, Last: at(9), Until: at(19)},
			SharedFailures{Failures: Failures{Count: 3, Last: at(8)}},
			Failures{Count: 4, Last: at(9), Until: at(19)}},
		{"cluster locked", Failures{}, SharedFailures{Failures: Failures{Count: 5, Last: at(8)}},
			Failures{Count: 5, Last: at(8), Until: at(8 + 40)}},
		{"local failures before the cluster's success are gone", Failures{Count: 4, Last: at(5)},
			SharedFailures{Cleared: at(6)}, Failures{}},
		{"a local success hides older cluster failures", Cleared(at(10)),
			SharedFailures{Failures: Failures{Count: 4, Last: at(8)}}, Cleared(at(10))},
		{"but not newer ones", Cleared(at(10)),
			SharedFailures{Failures: Failures{Count: 4, Last: at(12)}},
			Failures{Count: 4, Last: at(12), Until: at(12 + 20)}},
	}
	for _, tt := range tests {
		got := tt.local.Merge(tt.shared, l)
		if got.Count != tt.want.Count || !got.Last.Equal(tt.want.Last) || !got.Until.Equal(tt.want.Until) {
			t.Errorf("%s: Merge = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
