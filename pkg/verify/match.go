package verify

import (
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

type matchStatus int

const (
	matchNone   matchStatus = iota
	matchOK                 // a step in the window, later than the token's last accepted step
	matchReplay             // only steps at or before the last accepted step matched
	matchSkew               // a step outside the window but within the skew hint matched
)

type match struct {
	status      matchStatus
	token       *token.Token
	step        uint64
	skewSeconds int // with matchSkew: how far ahead (+) or behind (-) the device seems
}

// findMatch checks codes (by digit count) against the active tokens at now. Among the steps of a
// token's window that match, it takes the highest one greater than lastStep(token). Every code
// comparison is constant-time.
func findMatch(tokens []token.Token, codes map[int]string, now time.Time, window, skewHint int,
	lastStep func(id string) uint64) match {
	var replay, skew match
	for i := range tokens {
		t := &tokens[i]
		code, ok := codes[t.Digits]
		if t.State != token.Active || !ok {
			continue
		}
		p := t.Params()
		cur := totp.Step(now, p.Period)
		last := max(lastStep(t.ID), t.UsedStep)
		var best uint64
		found := false
		for d := -window; d <= window; d++ {
			s, ok := offset(cur, d)
			if !ok || !totp.Equal(totp.Code(t.Secret, p, s), code) {
				continue
			}
			if s > last {
				if !found || s > best {
					best, found = s, true
				}
			} else if replay.status == matchNone {
				replay = match{status: matchReplay, token: t, step: s}
			}
		}
		if found {
			return match{status: matchOK, token: t, step: best}
		}
		if skew.status != matchNone {
			continue
		}
		for d := window + 1; d <= skewHint; d++ {
			for _, sd := range []int{d, -d} {
				s, ok := offset(cur, sd)
				if ok && totp.Equal(totp.Code(t.Secret, p, s), code) {
					skew = match{status: matchSkew, token: t, step: s, skewSeconds: sd * p.Period}
					break
				}
			}
			if skew.status != matchNone {
				break
			}
		}
	}
	if replay.status != matchNone {
		return replay
	}
	return skew
}

func offset(step uint64, d int) (uint64, bool) {
	if d < 0 && uint64(-d) > step {
		return 0, false
	}
	return uint64(int64(step) + int64(d)), true
}
