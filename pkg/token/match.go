package token

import (
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Status is what Match found.
type Status int

// Match results.
const (
	// NoMatch: the code matches no step within the skew hint.
	NoMatch Status = iota
	// OK: a step in the window, later than the last accepted one, matched: accept and record it.
	OK
	// Replay: only steps at or before the last accepted one matched: refuse.
	Replay
	// Skew: a step outside the window but within the skew hint matched. Refuse, count a failure,
	// and burn the step (record max(last, Step) as the last accepted one), so that the code is
	// never accepted when its time comes.
	Skew
)

// Result is the answer of Match.
type Result struct {
	Status Status
	// Step is the matched time step (OK, Replay, Skew).
	Step uint64
	// SkewSeconds, with Skew, is how far the device seems ahead (+) or behind (-).
	SkewSeconds int
}

// Match checks code against t at now. Among the steps within window of now that match, the
// highest one greater than last and than t.UsedStep wins (OK); if only steps at or before those
// matched, the result is Replay; otherwise the nearest step within skewHint steps of now that
// matches is a Skew. Every comparison is constant-time.
func Match(t *Token, code string, now time.Time, window, skewHint int, last uint64) Result {
	p := t.Params()
	cur := totp.Step(now, p.Period)
	last = max(last, t.UsedStep)
	var r Result
	for d := -window; d <= window; d++ {
		s, ok := offset(cur, d)
		if !ok || !totp.Equal(totp.Code(t.Secret, p, s), code) {
			continue
		}
		if s > last {
			if r.Status != OK || s > r.Step {
				r = Result{Status: OK, Step: s}
			}
		} else if r.Status == NoMatch {
			r = Result{Status: Replay, Step: s}
		}
	}
	if r.Status != NoMatch {
		return r
	}
	for d := window + 1; d <= skewHint; d++ {
		for _, sd := range []int{d, -d} {
			if s, ok := offset(cur, sd); ok && totp.Equal(totp.Code(t.Secret, p, s), code) {
				return Result{Status: Skew, Step: s, SkewSeconds: sd * p.Period}
			}
		}
	}
	return Result{}
}

// MatchAny checks codes (keyed by digit count) against the active tokens among tokens at now,
// with lastStep giving each token's last accepted step. The first token with an OK match wins;
// otherwise the first Replay, otherwise the first Skew. It returns the index of the token (-1
// with NoMatch) and the result.
func MatchAny(tokens []Token, codes map[int]string, now time.Time, window, skewHint int,
	lastStep func(id string) uint64) (int, Result) {
	replay, skew := -1, -1
	var replayR, skewR Result
	for i := range tokens {
		t := &tokens[i]
		code, ok := codes[t.Digits]
		if t.State != Active || !ok {
			continue
		}
		r := Match(t, code, now, window, skewHint, lastStep(t.ID))
		switch r.Status {
		case OK:
			return i, r
		case Replay:
			if replay < 0 {
				replay, replayR = i, r
			}
		case Skew:
			if skew < 0 {
				skew, skewR = i, r
			}
		}
	}
	if replay >= 0 {
		return replay, replayR
	}
	if skew >= 0 {
		return skew, skewR
	}
	return -1, Result{}
}

func offset(step uint64, d int) (uint64, bool) {
	if d < 0 && uint64(-d) > step {
		return 0, false
	}
	return uint64(int64(step) + int64(d)), true
}

// Codes reads answer as a code for each digit count of the active tokens among tokens (ASCII
// digits after trimming spaces, totp.ParseCode), keyed by digit count: what MatchAny takes. With
// trailing, the code is the answer's last digits (a password and a code in one answer).
func Codes(tokens []Token, answer string, trailing bool) map[int]string {
	codes := map[int]string{}
	for _, t := range tokens {
		d := t.Digits
		if _, done := codes[d]; done || t.State != Active {
			continue
		}
		s := answer
		if trailing {
			if len(s) <= d {
				continue
			}
			s = s[len(s)-d:]
		}
		if c, ok := totp.ParseCode(s, d); ok {
			codes[d] = c
		}
	}
	return codes
}
