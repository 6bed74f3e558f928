package nodesync

import "time"

// Backoff is the reconnect delay: Min, doubling per failure up to Max, each delay scaled by a
// random factor in [1-Jitter, 1+Jitter) so that a registry restart does not bring every node
// back in the same instant.
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64        // 0.2 for ±20 %
	Rand     func() float64 // uniform in [0, 1)
	cur      time.Duration
}

// Next returns the delay before the next attempt and grows the base.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	f := 1 + b.Jitter*(2*b.Rand()-1)
	return time.Duration(float64(b.cur) * f)
}

// Reset starts over at Min after a connection made progress.
func (b *Backoff) Reset() { b.cur = 0 }
