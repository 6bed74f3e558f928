package portal

import (
	"sync"
	"time"
)

// limiter counts events per key in fixed windows, in memory (each replica its own).
type limiter struct {
	mu  sync.Mutex
	max int
	per time.Duration
	m   map[string]window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(max int, per time.Duration) *limiter {
	return &limiter{max: max, per: per, m: map[string]window{}}
}

// allow counts one event of key at now; false (with the wait) when the window is full.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 { // forget ended windows
		for k, w := range l.m {
			if now.Sub(w.start) >= l.per {
				delete(l.m, k)
			}
		}
	}
	w := l.m[key]
	if now.Sub(w.start) >= l.per || now.Before(w.start) {
		w = window{start: now}
	}
	if w.n >= l.max {
		return false, w.start.Add(l.per).Sub(now)
	}
	w.n++
	l.m[key] = w
	return true, 0
}
