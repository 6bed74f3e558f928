package totp

import (
	"testing"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

var sink string

// BenchmarkCode measures Code as the verifier calls it: once per step of
// the window on every login.
func BenchmarkCode(b *testing.B) {
	for _, bc := range []struct {
		name   string
		secret []byte
		p      Params
	}{
		{"SHA1-6", seed20, DefaultParams},
		{"SHA256-8", seed32, Params{SHA256, 8, 30}},
		{"SHA512-8", seed64, Params{SHA512, 8, 30}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink = Code(bc.secret, bc.p, uint64(i))
			}
		})
	}
}

// BenchmarkCodePquerna measures github.com/pquerna/otp's HOTP for the same
// job, the alternative Code was measured against (see the package doc).
// "Encode" includes the base32 encoding the []byte API would need on each
// call; "Stored" assumes the base32 text is kept and passed as is.
func BenchmarkCodePquerna(b *testing.B) {
	opts := hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	b.Run("SHA1-6/Encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = hotp.GenerateCodeCustom(EncodeSecret(seed20), uint64(i), opts)
		}
	})
	b.Run("SHA1-6/Stored", func(b *testing.B) {
		b.ReportAllocs()
		s := EncodeSecret(seed20)
		for i := 0; b.Loop(); i++ {
			sink, _ = hotp.GenerateCodeCustom(s, uint64(i), opts)
		}
	})
}

func BenchmarkParseCode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = ParseCode(" 123 456 ", 6)
	}
}
