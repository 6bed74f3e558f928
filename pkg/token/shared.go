package token

import (
	"fmt"
	"time"
)

// The cluster-wide rules of logins (docs/sync-protocol.md, "Claims and the failure budget"):
// while a node is in contact with the registry, each accepted code is claimed there first, so one
// (token, step) is accepted once on the whole cluster, and every node's wrong codes count against
// one per-user failure record that the registry keeps and syncs to every node.

// Claim is the registry's record of the last step claimed for a token: by which node and when.
// A backup code or passcode is claimed as the pseudo-token "backup:ID" at step 1.
type Claim struct {
	Step uint64    `json:"step"`
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

// Claimable is the single-use rule of a claim: a step is granted once, and only above the last
// step granted for the token. A node asking again for the step it was granted (a retry, or an
// offline claim reported after the live one) is granted it again: that is one acceptance.
func (c Claim) Claimable(step uint64, node string) bool {
	return step > c.Step || step == c.Step && node == c.Node && node != ""
}

// Login event kinds.
const (
	EventClaim   = "claim"   // a code the node accepts (or accepted, when Offline): claim its step
	EventFailure = "failure" // a wrong code: count it against the user's one failure budget
)

// LoginEvent is one login's outcome as the registry needs it: a claim of (Token, Step), or a
// failure. Token is the token id, or ClaimID(id) for a backup code or passcode (Step 1). Nodes
// keep the events they still owe the registry in state.db and send them in registryapi's
// LoginReport.
type LoginEvent struct {
	Kind    string    `json:"kind"`
	User    string    `json:"user"`
	Token   string    `json:"token,omitempty"`
	Step    uint64    `json:"step,omitempty"`
	At      time.Time `json:"at"`
	Offline bool      `json:"offline,omitempty"`
}

// ClaimID is the token id a backup code or passcode is claimed under.
func ClaimID(backupID string) string { return "backup:" + backupID }

// SharedFailures is a user's failure record at the registry, synced to every node as the record
// "u/USER/failures": wrong login codes from every node and failed proofs of self-service changes
// at the registry, in one count. Cleared is the last success anywhere: a node's own failures from
// before it no longer count.
type SharedFailures struct {
	User string `json:"user"`
	Failures
	Cleared time.Time `json:"cleared,omitzero"`
}

// Validate checks the record.
func (s *SharedFailures) Validate() error {
	if err := ValidUser(s.User); err != nil {
		return err
	}
	if s.Count < 0 {
		return fmt.Errorf("failures of %s: negative count: %w", s.User, ErrInvalid)
	}
	return nil
}

// Fail counts one failure that happened at (a node's report may arrive late). A failure from
// before the last success does not count: the success cleared it. It reports whether it counted.
func (s *SharedFailures) Fail(at time.Time, l Limits) bool {
	if !at.After(s.Cleared) {
		return false
	}
	last := s.Last
	s.Failures, _ = s.Failures.Fail(at, l)
	if last.After(at) { // an older report arriving after a newer one: keep the newest time
		s.Last = last
	}
	return true
}

// Clear records a success at: the failures before it no longer count.
func (s *SharedFailures) Clear(at time.Time) {
	if at.After(s.Cleared) {
		s.Cleared = at
	}
	if !s.Last.After(at) {
		s.Failures = Failures{}
	}
}

// Unlock is an administrator's unlock at now: every failure counted so far is forgotten, even
// one a node's clock placed after now.
func (s *SharedFailures) Unlock(now time.Time) {
	s.Clear(now)
	if s.Last.After(s.Cleared) {
		s.Cleared = s.Last
	}
	s.Failures = Failures{}
}

// Merge is a node's view of a user's failures: its own record (what logins on this node counted)
// joined with the cluster's. Local failures from before the cluster's last success are dropped;
// the larger count wins, and the back-off is the node's rule (l) applied to the cluster's count
// as well as its own.
func (f Failures) Merge(s SharedFailures, l Limits) Failures {
	if !f.Last.After(s.Cleared) {
		f = Failures{}
	}
	if s.Count <= f.Count || f.Count == 0 && !f.Last.IsZero() && !s.Last.After(f.Last) {
		return f // the cluster has nothing newer than this node's own count or success (Cleared)
	}
	out := Failures{Count: s.Count, Last: s.Last, Until: f.Until}
	if f.Last.After(out.Last) {
		out.Last = f.Last
	}
	if d := l.Backoff(s.Count); d > 0 {
		if u := s.Last.Add(d); u.After(out.Until) {
			out.Until = u
		}
	}
	return out
}

// Cleared is a node's failure record right after a success at: no failures, and the time of
// the success, so that Merge drops the cluster's failures from before it (the registry hears of
// the success later when it was offline).
func Cleared(at time.Time) Failures { return Failures{Last: at} }
