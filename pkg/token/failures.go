package token

import "time"

// Failures counts a user's consecutive failed answers: codes at login and proofs of a
// self-service change alike. Only a success (or an administrator) clears them; a wait between
// failures does not, so guessing is bounded for good by Limits.LockoutAfter.
type Failures struct {
	Count int       `json:"count"`
	Last  time.Time `json:"last"`
	// Until is the end of the current back-off: no answer is checked before it.
	Until time.Time `json:"until,omitzero"`
}

// Limits is the one failure rule: FreeFailures failures in a row cost nothing, each further one
// starts a back-off of InitialBackoff doubled per failure up to MaxBackoff, and LockoutAfter
// failures lock the user until an administrator unlocks them (NIST SP 800-63B allows at most 100).
type Limits struct {
	FreeFailures   int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	LockoutAfter   int
}

// Fail counts one failure at now and returns the new record and the back-off it starts (0 when
// none).
func (f Failures) Fail(now time.Time, l Limits) (Failures, time.Duration) {
	f.Count++
	f.Last = now
	d := l.Backoff(f.Count)
	if d > 0 {
		f.Until = now.Add(d)
	}
	return f, d
}

// Backoff is the wait that the count-th failure in a row starts (0 when it is free).
func (l Limits) Backoff(count int) time.Duration {
	if count <= l.FreeFailures {
		return 0
	}
	d := l.InitialBackoff
	for i := l.FreeFailures + 1; i < count && d < l.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, l.MaxBackoff)
}

// Locked says whether no answer may be checked at now: for good (the lockout, until an
// administrator unlocks the user) or for wait (a back-off).
func (f Failures) Locked(now time.Time, l Limits) (forGood bool, wait time.Duration) {
	if f.Count >= l.LockoutAfter {
		return true, 0
	}
	if now.Before(f.Until) {
		return false, f.Until.Sub(now)
	}
	return false, 0
}
