package totp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseURI: ParseURI never panics; whatever it accepts is a valid Key,
// and writing that Key out (URI, ShortURI, and ShortURI without the issuer)
// and reading it back is stable.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
		"otpauth://totp/alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=sha512&digits=8&period=60",
		"otpauth://totp/ACME%20Co%3A%20john?secret=gezd-gnbv-gy3t-qojq&issuer=ACME+Co&image=x",
		"otpauth://totp/Universit%C3%A4t:j%C3%B6rg%2Fws?secret=JBSWY3DPEHPK3PXP",
		"otpauth://hotp/alice?secret=JBSWY3DPEHPK3PXP&counter=1",
		"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=9",
		"https://example.org/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseURI(s)
		if err != nil {
			if !reflect.DeepEqual(k, Key{}) {
				t.Fatalf("ParseURI(%q) = %+v, %v: non-zero Key with an error", s, k, err)
			}
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("ParseURI(%q) = %+v, which fails Validate: %v", s, k, err)
		}
		if Code(k.Secret, k.Params, 1) == "" {
			t.Fatalf("ParseURI(%q) = %+v, for which Code fails", s, k)
		}
		u := k.URI()
		if len(u) > MaxURILen {
			t.Fatalf("URI(%+v) has %d bytes, more than MaxURILen", k, len(u))
		}
		k2, err := ParseURI(u)
		if err != nil || !reflect.DeepEqual(k2, k) {
			t.Fatalf("ParseURI(%q) = %+v, %v, want %+v (from %q)", u, k2, err, k, s)
		}
		if u2 := k2.URI(); u2 != u {
			t.Fatalf("URI() = %q after a round trip, want %q", u2, u)
		}
		su := k.ShortURI()
		if len(su) > len(u) {
			t.Fatalf("ShortURI(%+v) has %d bytes, URI %d: longer", k, len(su), len(u))
		}
		if k3, err := ParseURI(su); err != nil || !reflect.DeepEqual(k3, k) {
			t.Fatalf("ParseURI(%q) = %+v, %v, want %+v (from %q)", su, k3, err, k, s)
		}
		bare := k
		bare.Issuer = ""
		bu := bare.ShortURI()
		if k4, err := ParseURI(bu); err != nil || !reflect.DeepEqual(k4, bare) {
			t.Fatalf("ParseURI(%q) = %+v, %v, want %+v (from %q)", bu, k4, err, bare, s)
		}
	})
}

// FuzzParseCode: ParseCode accepts exactly the answers that are the right
// number of ASCII digits with spaces and tabs around or between them.
func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"123456", " 123 456\t", "12345678", "１２３４５６", "12345a", "", "1234567"} {
		f.Add(s, 6)
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, answer string, digits int) {
		code, ok := ParseCode(answer, digits)
		// The reference: drop spaces and tabs, then demand digits only.
		ref := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, answer)
		want := digits >= MinDigits && digits <= MaxDigits && len(answer) <= maxAnswerLen &&
			len(ref) == digits && strings.Trim(ref, "0123456789") == ""
		if ok != want {
			t.Fatalf("ParseCode(%q, %d) = %q, %v, want ok %v", answer, digits, code, ok, want)
		}
		if !ok {
			if code != "" {
				t.Fatalf("ParseCode(%q, %d) = %q, false, want \"\"", answer, digits, code)
			}
			return
		}
		if code != ref || len(code) != digits {
			t.Fatalf("ParseCode(%q, %d) = %q, want %q", answer, digits, code, ref)
		}
		for i := 0; i < len(code); i++ {
			if code[i] < '0' || code[i] > '9' {
				t.Fatalf("ParseCode(%q, %d) = %q, which has a non-digit", answer, digits, code)
			}
		}
		if again, ok := ParseCode(code, digits); !ok || again != code {
			t.Fatalf("ParseCode(%q, %d) = %q, %v, want it unchanged", code, digits, again, ok)
		}
	})
}

// FuzzDecodeSecret: DecodeSecret never panics, returns only secrets of an
// allowed size, and agrees with EncodeSecret in every tolerated spelling.
func FuzzDecodeSecret(f *testing.F) {
	for _, s := range []string{
		"JBSWY3DPEHPK3PXP", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "GEZDGNBVGY3TQOJQGE======",
		"GEZDG-NBVGY-3TQOJ-QGEZD", "GEZDGNBVGY3TQOJQG", "0O1I8B", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeSecret(s)
		if err != nil {
			if b != nil {
				t.Fatalf("DecodeSecret(%q) = %x, %v: bytes with an error", s, b, err)
			}
			return
		}
		if len(b) < MinSecretLen || len(b) > MaxSecretLen {
			t.Fatalf("DecodeSecret(%q) = %d bytes, outside %d..%d", s, len(b), MinSecretLen, MaxSecretLen)
		}
		enc := EncodeSecret(b)
		if strings.Trim(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
			t.Fatalf("EncodeSecret(%x) = %q, not upper-case unpadded base32", b, enc)
		}
		for _, spelling := range []string{enc, strings.ToLower(enc), group(enc, " ", 4), group(enc, "-", 5), pad(enc)} {
			b2, err := DecodeSecret(spelling)
			if err != nil || !bytes.Equal(b2, b) {
				t.Fatalf("DecodeSecret(%q) = %x, %v, want %x (from %q)", spelling, b2, err, b, s)
			}
		}
	})
}

func group(s, sep string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s[i:min(i+n, len(s))])
	}
	return b.String()
}

func pad(s string) string {
	return s + strings.Repeat("=", (8-len(s)%8)%8)
}
