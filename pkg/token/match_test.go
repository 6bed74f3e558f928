package token

import (
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

var (
	seed1   = []byte("12345678901234567890")
	seed256 = []byte("12345678901234567890123456789012")
	seed512 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

func tok(alg totp.Algorithm, secret []byte, digits int) *Token {
	return &Token{User: "alice", ID: "t1", Algorithm: alg, Digits: digits, Period: 30, Secret: secret, State: Active}
}

// TestMatch is the one table of the code-window and replay rule: the RFC 6238 vectors, the edges
// of the window and of the skew hint, and replay against the last accepted step and UsedStep.
func TestMatch(t *testing.T) {
	t.Parallel()
	// RFC 6238 Appendix B.
	vectors := []struct {
		unix int64
		alg  totp.Algorithm
		seed []byte
		code string
	}{
		{59, totp.SHA1, seed1, "94287082"}, {59, totp.SHA256, seed256, "46119246"}, {59, totp.SHA512, seed512, "90693936"},
		{1111111109, totp.SHA1, seed1, "07081804"}, {1111111109, totp.SHA256, seed256, "68084774"}, {1111111109, totp.SHA512, seed512, "25091201"},
		{1111111111, totp.SHA1, seed1, "14050471"}, {1111111111, totp.SHA256, seed256, "67062674"}, {1111111111, totp.SHA512, seed512, "99943326"},
		{1234567890, totp.SHA1, seed1, "89005924"}, {1234567890, totp.SHA256, seed256, "91819424"}, {1234567890, totp.SHA512, seed512, "93441116"},
		{2000000000, totp.SHA1, seed1, "69279037"}, {2000000000, totp.SHA256, seed256, "90698825"}, {2000000000, totp.SHA512, seed512, "38618901"},
		{20000000000, totp.SHA1, seed1, "65353130"}, {20000000000, totp.SHA256, seed256, "77737706"}, {20000000000, totp.SHA512, seed512, "47863826"},
	}
	for _, v := range vectors {
		t.Run("rfc6238/"+string(v.alg)+"/"+time.Unix(v.unix, 0).UTC().Format(time.RFC3339), func(t *testing.T) {
			tk := tok(v.alg, v.seed, 8)
			now := time.Unix(v.unix, 0)
			step := uint64(v.unix / 30)
			if got := Match(tk, v.code, now, 0, 0, 0); got != (Result{Status: OK, Step: step}) {
				t.Errorf("Match(%s) = %+v, want OK at %d", v.code, got, step)
			}
			if got := Match(tk, v.code, now, 0, 0, step); got.Status != Replay {
				t.Errorf("Match(%s, last = its step) = %+v, want Replay", v.code, got)
			}
		})
	}

	tk := tok(totp.SHA1, seed1, 6)
	now := time.Unix(1111111111, 0)
	cur := totp.Step(now, 30)
	codeAt := func(d int) string { return totp.Code(tk.Secret, tk.Params(), uint64(int64(cur)+int64(d))) }
	at := func(d int) uint64 { return uint64(int64(cur) + int64(d)) }
	const window, hint = 1, 10
	cases := []struct {
		name     string
		d        int    // the code is that of cur+d
		last     uint64 // last accepted step
		usedStep uint64
		want     Result
	}{
		{name: "now", d: 0, want: Result{Status: OK, Step: at(0)}},
		{name: "+window", d: window, want: Result{Status: OK, Step: at(window)}},
		{name: "-window", d: -window, want: Result{Status: OK, Step: at(-window)}},
		{name: "+(window+1) is skew", d: window + 1, want: Result{Status: Skew, Step: at(window + 1), SkewSeconds: 30 * (window + 1)}},
		{name: "-(window+1) is skew", d: -window - 1, want: Result{Status: Skew, Step: at(-window - 1), SkewSeconds: -30 * (window + 1)}},
		{name: "+hint is skew", d: hint, want: Result{Status: Skew, Step: at(hint), SkewSeconds: 30 * hint}},
		{name: "beyond +hint is none", d: hint + 1, want: Result{}},
		{name: "beyond -hint is none", d: -hint - 1, want: Result{}},
		{name: "last equal is replay", d: 0, last: at(0), want: Result{Status: Replay, Step: at(0)}},
		{name: "last above is replay", d: -1, last: at(0), want: Result{Status: Replay, Step: at(-1)}},
		{name: "last below is ok", d: 0, last: at(-1), want: Result{Status: OK, Step: at(0)}},
		{name: "used step equal is replay", d: 0, usedStep: at(0), want: Result{Status: Replay, Step: at(0)}},
		{name: "used step above last is replay", d: 0, last: at(-5), usedStep: at(1), want: Result{Status: Replay, Step: at(0)}},
		{name: "used step below is ok", d: 1, usedStep: at(0), want: Result{Status: OK, Step: at(1)}},
		{name: "burned skew step refuses its code later", d: 0, last: at(0), want: Result{Status: Replay, Step: at(0)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := *tk
			k.UsedStep = c.usedStep
			if got := Match(&k, codeAt(c.d), now, window, hint, c.last); got != c.want {
				t.Errorf("Match(code at %+d, last %d, used %d) = %+v, want %+v", c.d, c.last, c.usedStep, got, c.want)
			}
		})
	}
	t.Run("window 0 with hint 0 is none off the step", func(t *testing.T) {
		if got := Match(tk, codeAt(1), now, 0, 0, 0); got.Status != NoMatch {
			t.Errorf("Match = %+v, want NoMatch", got)
		}
	})
	t.Run("epoch: no step before zero", func(t *testing.T) {
		// At step 0 a window of 1 looks at steps 0 and 1 only (step 0 is never later than "none").
		if got := Match(tk, totp.Code(tk.Secret, tk.Params(), 1), time.Unix(0, 0), 1, 10, 0); got != (Result{Status: OK, Step: 1}) {
			t.Errorf("Match at the epoch = %+v, want OK at 1", got)
		}
	})
}

func TestMatchAny(t *testing.T) {
	t.Parallel()
	now := time.Unix(1111111111, 0)
	cur := totp.Step(now, 30)
	six := Token{ID: "six", Algorithm: totp.SHA1, Digits: 6, Period: 30, Secret: seed1, State: Active}
	eight := Token{ID: "eight", Algorithm: totp.SHA256, Digits: 8, Period: 30, Secret: seed256, State: Active}
	off := six
	off.ID, off.State = "off", Disabled
	code := func(k Token, d int) string { return totp.Code(k.Secret, k.Params(), uint64(int64(cur)+int64(d))) }
	none := func(string) uint64 { return 0 }
	cases := []struct {
		name   string
		tokens []Token
		codes  map[int]string
		last   func(string) uint64
		want   int
		status Status
	}{
		{"eight digits", []Token{six, eight}, map[int]string{6: code(eight, 0)[2:], 8: code(eight, 0)}, none, 1, OK},
		{"disabled never matches", []Token{off}, map[int]string{6: code(off, 0)}, none, -1, NoMatch},
		{"ok beats replay", []Token{six, eight}, map[int]string{6: code(six, 0), 8: code(eight, 0)},
			func(id string) uint64 {
				if id == "six" {
					return cur
				}
				return 0
			}, 1, OK},
		{"replay beats skew", []Token{six, eight}, map[int]string{6: code(six, 3), 8: code(eight, 0)},
			func(string) uint64 { return cur }, 1, Replay},
		{"skew", []Token{six}, map[int]string{6: code(six, 2)}, none, 0, Skew},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i, r := MatchAny(c.tokens, c.codes, now, 1, 10, c.last)
			if i != c.want || r.Status != c.status {
				t.Errorf("MatchAny = %d, %+v; want %d, status %d", i, r, c.want, c.status)
			}
		})
	}
}

func TestCodes(t *testing.T) {
	t.Parallel()
	toks := []Token{{Digits: 6, State: Active}, {Digits: 8, State: Active}, {Digits: 7, State: Disabled}}
	cases := []struct {
		answer   string
		trailing bool
		want     map[int]string
	}{
		{"123456", false, map[int]string{6: "123456"}},
		{" 123 456 ", false, map[int]string{6: "123456"}},
		{"12345678", false, map[int]string{8: "12345678"}},
		{"1234567", false, map[int]string{}},
		{"secret12345678", true, map[int]string{6: "345678", 8: "12345678"}},
		{"123456", true, map[int]string{}}, // a password is needed before the code
		{"١٢٣٤٥٦", false, map[int]string{}},
	}
	for _, c := range cases {
		got := Codes(toks, c.answer, c.trailing)
		if len(got) != len(c.want) {
			t.Errorf("Codes(%q, %v) = %v, want %v", c.answer, c.trailing, got, c.want)
			continue
		}
		for d, w := range c.want {
			if got[d] != w {
				t.Errorf("Codes(%q, %v) = %v, want %v", c.answer, c.trailing, got, c.want)
			}
		}
	}
}
