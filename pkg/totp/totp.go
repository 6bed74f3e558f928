package totp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Algorithm names the HMAC hash function of a token, spelled as in otpauth
// URIs.
type Algorithm string

// The supported algorithms. SHA1 is what nearly every authenticator app
// supports; SHA256 and SHA512 are allowed per token.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// Bounds of Params, checked by [Params.Validate].
//
// Digits: RFC 4226 requires at least 6; 8 is the most any common app shows
// (and oathtool computes). Period: below 15 s a user cannot read and type a
// code before it changes; above 300 s a code, and with a window of ±1 step
// the three codes around it, stay usable for a quarter of an hour, which is
// too long for a value that can be read over a shoulder. 30 s (the RFC 6238
// default) and 60 s are what apps and hardware tokens use.
const (
	MinDigits = 6
	MaxDigits = 8
	MinPeriod = 15
	MaxPeriod = 300
)

// Errors of this package, for errors.Is. The messages that wrap them give
// the offending parameter but never a secret, a code or a URI.
var (
	// ErrAlgorithm: the algorithm is not SHA1, SHA256 or SHA512.
	ErrAlgorithm = errors.New("totp: unsupported algorithm")
	// ErrDigits: the number of digits is outside MinDigits..MaxDigits.
	ErrDigits = errors.New("totp: unsupported number of digits")
	// ErrPeriod: the period is outside MinPeriod..MaxPeriod seconds.
	ErrPeriod = errors.New("totp: unsupported period")
	// ErrSecretEncoding: a secret is not valid base32.
	ErrSecretEncoding = errors.New("totp: secret is not valid base32")
	// ErrSecretSize: a secret is shorter or longer than allowed.
	ErrSecretSize = errors.New("totp: secret has an unsupported size")
	// ErrKey: a Key has an invalid issuer or account name.
	ErrKey = errors.New("totp: invalid key")
	// ErrURI: an otpauth URI is malformed or not a TOTP key.
	ErrURI = errors.New("totp: invalid otpauth URI")
)

// Params are the code parameters of a token.
type Params struct {
	Algorithm Algorithm
	Digits    int
	Period    int // seconds
}

// DefaultParams are the RFC 6238 defaults that every authenticator app
// understands: HMAC-SHA1, 6 digits, 30 seconds.
var DefaultParams = Params{Algorithm: SHA1, Digits: 6, Period: 30}

// Validate reports whether p has a known algorithm, MinDigits..MaxDigits
// digits and a period of MinPeriod..MaxPeriod seconds.
func (p Params) Validate() error {
	if newHash(p.Algorithm) == nil {
		return fmt.Errorf("%w %q (want SHA1, SHA256 or SHA512)", ErrAlgorithm, short(string(p.Algorithm)))
	}
	if p.Digits < MinDigits || p.Digits > MaxDigits {
		return fmt.Errorf("%w: %d (want %d to %d)", ErrDigits, p.Digits, MinDigits, MaxDigits)
	}
	if p.Period < MinPeriod || p.Period > MaxPeriod {
		return fmt.Errorf("%w: %d seconds (want %d to %d)", ErrPeriod, p.Period, MinPeriod, MaxPeriod)
	}
	return nil
}

// newHash returns the hash constructor of a, or nil for an unknown a.
func newHash(a Algorithm) func() hash.Hash {
	switch a {
	case SHA1:
		return sha1.New
	case SHA256:
		return sha256.New
	case SHA512:
		return sha512.New
	}
	return nil
}

// Step returns the RFC 6238 time step of t: floor(unix seconds / period),
// with T0 = 0. Times before 1970 give 0. Step does not validate period;
// callers pass a validated Params.Period, and a period below 1 gives 0.
func Step(t time.Time, period int) uint64 {
	u := t.Unix()
	if u < 0 || period < 1 {
		return 0
	}
	return uint64(u) / uint64(period)
}

var pow10 = [MaxDigits + 1]uint32{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// Code returns the RFC 4226 HOTP value of secret and counter step, as
// p.Digits zero-padded decimal digits, hashed with p.Algorithm. For TOTP,
// pass [Step](now, p.Period); Code itself does not look at p.Period.
//
// Code fails closed: for an unknown algorithm, a digit count outside
// MinDigits..MaxDigits, or a secret shorter than MinSecretLen or longer than
// MaxSecretLen it returns "", which [Equal] never matches.
func Code(secret []byte, p Params, step uint64) string {
	h := newHash(p.Algorithm)
	if h == nil || p.Digits < MinDigits || p.Digits > MaxDigits ||
		len(secret) < MinSecretLen || len(secret) > MaxSecretLen {
		return ""
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], step)
	mac := hmac.New(h, secret)
	mac.Write(msg[:])
	var buf [sha512.Size]byte
	sum := mac.Sum(buf[:0])

	// Dynamic truncation, RFC 4226 section 5.3.
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	v %= pow10[p.Digits]

	var out [MaxDigits]byte
	for i := p.Digits - 1; i >= 0; i-- {
		out[i] = '0' + byte(v%10)
		v /= 10
	}
	return string(out[:p.Digits])
}

// maxAnswerLen bounds the answers ParseCode looks at. A code with spaces
// between its digits fits many times over; anything longer is not a code.
const maxAnswerLen = 64

// ParseCode extracts a code of exactly digits ASCII digits from a typed
// answer. Spaces and tabs are ignored wherever they are (" 123 456\t" is
// "123456"); any other byte, including non-ASCII digits, makes the answer
// invalid, as do a digit count other than digits, a digits argument outside
// MinDigits..MaxDigits, and answers longer than 64 bytes.
func ParseCode(answer string, digits int) (string, bool) {
	if digits < MinDigits || digits > MaxDigits || len(answer) > maxAnswerLen {
		return "", false
	}
	var out [MaxDigits]byte
	n := 0
	for i := 0; i < len(answer); i++ {
		switch c := answer[i]; {
		case c == ' ' || c == '\t':
		case '0' <= c && c <= '9':
			if n == digits {
				return "", false
			}
			out[n] = c
			n++
		default:
			return "", false
		}
	}
	if n != digits {
		return "", false
	}
	return string(out[:n]), true
}

// Equal reports whether the codes a and b are equal, in time that depends
// only on their lengths. An empty code never matches, so a "" from [Code]
// cannot be matched by an empty answer.
func Equal(a, b string) bool {
	return len(a) != 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
