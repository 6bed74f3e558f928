package totp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// RFC 6238 Appendix B seeds: the SHA256 and SHA512 rows use 32- and 64-byte
// seeds (RFC 6238 errata), not the 20-byte seed the prose names.
var (
	seed20 = []byte("12345678901234567890")
	seed32 = []byte("12345678901234567890123456789012")
	seed64 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

func TestCodeRFC6238(t *testing.T) {
	t.Parallel()
	rows := []struct {
		unix                 int64
		step                 uint64
		sha1, sha256, sha512 string
	}{
		{59, 0x1, "94287082", "46119246", "90693936"},
		{1111111109, 0x23523EC, "07081804", "68084774", "25091201"},
		{1111111111, 0x23523ED, "14050471", "67062674", "99943326"},
		{1234567890, 0x273EF07, "89005924", "91819424", "93441116"},
		{2000000000, 0x3F940AA, "69279037", "90698825", "38618901"},
		{20000000000, 0x27BC86AA, "65353130", "77737706", "47863826"},
	}
	for _, r := range rows {
		for _, c := range []struct {
			alg    Algorithm
			secret []byte
			want   string
		}{
			{SHA1, seed20, r.sha1},
			{SHA256, seed32, r.sha256},
			{SHA512, seed64, r.sha512},
		} {
			t.Run(fmt.Sprintf("%s/%d", c.alg, r.unix), func(t *testing.T) {
				t.Parallel()
				p := Params{Algorithm: c.alg, Digits: 8, Period: 30}
				step := Step(time.Unix(r.unix, 0), p.Period)
				if step != r.step {
					t.Fatalf("Step(%d, 30) = %#x, want %#x", r.unix, step, r.step)
				}
				if got := Code(c.secret, p, step); got != c.want {
					t.Errorf("Code(%s, step %#x) = %q, want %q", c.alg, step, got, c.want)
				}
			})
		}
	}
}

func TestCodeRFC4226(t *testing.T) {
	t.Parallel()
	want := []string{"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		t.Run(fmt.Sprint(counter), func(t *testing.T) {
			t.Parallel()
			if got := Code(seed20, DefaultParams, uint64(counter)); got != w {
				t.Errorf("Code(seed, counter %d) = %q, want %q", counter, got, w)
			}
		})
	}
}

// TestCodeFailsClosed: Code returns "" rather than a guessable code.
func TestCodeFailsClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret []byte
		p      Params
	}{
		{"unknown algorithm", seed20, Params{"MD5", 6, 30}},
		{"lower-case algorithm", seed20, Params{"sha1", 6, 30}},
		{"zero params", seed20, Params{}},
		{"5 digits", seed20, Params{SHA1, 5, 30}},
		{"9 digits", seed20, Params{SHA1, 9, 30}},
		{"nil secret", nil, DefaultParams},
		{"9-byte secret", seed20[:9], DefaultParams},
		{"129-byte secret", make([]byte, MaxSecretLen+1), DefaultParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Code(tt.secret, tt.p, 1); got != "" {
				t.Errorf("Code(%v) = %q, want \"\"", tt.p, got)
			}
		})
	}
	if Equal("", "") {
		t.Errorf(`Equal("", "") = true, want false`)
	}
}

func TestCodeDigits(t *testing.T) {
	t.Parallel()
	// The same HOTP value truncated to 6, 7 and 8 digits (RFC 4226 counter 1
	// has the 31-bit value 1094287082).
	for _, tt := range []struct {
		digits int
		want   string
	}{{6, "287082"}, {7, "4287082"}, {8, "94287082"}} {
		t.Run(fmt.Sprint(tt.digits), func(t *testing.T) {
			t.Parallel()
			p := Params{SHA1, tt.digits, 30}
			if got := Code(seed20, p, 1); got != tt.want {
				t.Errorf("Code(digits %d) = %q, want %q", tt.digits, got, tt.want)
			}
		})
	}
}

// TestCodeAgreesWithPquerna checks Code against github.com/pquerna/otp, an
// independent implementation, on random secrets, steps and parameters.
func TestCodeAgreesWithPquerna(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	algs := map[Algorithm]otp.Algorithm{SHA1: otp.AlgorithmSHA1, SHA256: otp.AlgorithmSHA256, SHA512: otp.AlgorithmSHA512}
	for i := range 2000 {
		secret := randBytes(rng, MinSecretLen+rng.IntN(MaxSecretLen-MinSecretLen+1))
		p := Params{[]Algorithm{SHA1, SHA256, SHA512}[i%3], MinDigits + rng.IntN(3), 30}
		step := rng.Uint64() >> rng.IntN(64)
		want, err := hotp.GenerateCodeCustom(EncodeSecret(secret), step,
			hotp.ValidateOpts{Digits: otp.Digits(p.Digits), Algorithm: algs[p.Algorithm]})
		if err != nil {
			t.Fatalf("pquerna GenerateCodeCustom: %v", err)
		}
		if got := Code(secret, p, step); got != want {
			t.Fatalf("Code(%x, %v, %d) = %q, want %q (pquerna)", secret, p, step, got, want)
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		t      time.Time
		period int
		want   uint64
	}{
		{"epoch", time.Unix(0, 0), 30, 0},
		{"last second of step 0", time.Unix(29, 999999999), 30, 0},
		{"first second of step 1", time.Unix(30, 0), 30, 1},
		{"RFC 6238 59 s", time.Unix(59, 0), 30, 1},
		{"zone does not matter", time.Unix(1111111111, 0).In(time.FixedZone("x", -7*3600)), 30, 0x23523ED},
		{"period 60", time.Unix(1234567890, 0), 60, 20576131},
		{"before 1970", time.Unix(-1, 0), 30, 0},
		{"long before 1970", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), 30, 0},
		{"year 3000", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 30, 32503680000 / 30},
		{"period 0", time.Unix(1234567890, 0), 0, 0},
		{"negative period", time.Unix(1234567890, 0), -30, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Step(tt.t, tt.period); got != tt.want {
				t.Errorf("Step(%v, %d) = %d, want %d", tt.t, tt.period, got, tt.want)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Params
		want error
	}{
		{"default", DefaultParams, nil},
		{"SHA256 8 digits 60 s", Params{SHA256, 8, 60}, nil},
		{"SHA512 7 digits", Params{SHA512, 7, 30}, nil},
		{"shortest period", Params{SHA1, 6, MinPeriod}, nil},
		{"longest period", Params{SHA1, 6, MaxPeriod}, nil},
		{"zero", Params{}, ErrAlgorithm},
		{"MD5", Params{"MD5", 6, 30}, ErrAlgorithm},
		{"lower case", Params{"sha1", 6, 30}, ErrAlgorithm},
		{"5 digits", Params{SHA1, 5, 30}, ErrDigits},
		{"9 digits", Params{SHA1, 9, 30}, ErrDigits},
		{"10 s", Params{SHA1, 6, 10}, ErrPeriod},
		{"301 s", Params{SHA1, 6, 301}, ErrPeriod},
		{"negative period", Params{SHA1, 6, -30}, ErrPeriod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.p.Validate(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Validate(%v) = %v, want %v", tt.p, err, tt.want)
			}
		})
	}
}

func TestParseCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		answer string
		digits int
		want   string
		ok     bool
	}{
		{"123456", 6, "123456", true},
		{"000000", 6, "000000", true},
		{" 123456 ", 6, "123456", true},
		{"\t123456\t", 6, "123456", true},
		{"123 456", 6, "123456", true},
		{"  123 456\t ", 6, "123456", true},
		{"1234 5678", 8, "12345678", true},
		{"1234567", 7, "1234567", true},
		{"", 6, "", false},
		{"   ", 6, "", false},
		{"12345", 6, "", false},
		{"1234567", 6, "", false},
		{"123456", 8, "", false},
		{"12345678", 6, "", false},
		{"123456\n", 6, "", false},
		{"123456\r", 6, "", false},
		{"\v123456", 6, "", false},
		{"12345a", 6, "", false},
		{"-12345", 6, "", false},
		{"+123456", 6, "", false},
		{"123-456", 6, "", false},
		{"١٢٣٤٥٦", 6, "", false},       // Arabic-Indic digits
		{"１２３４５６", 6, "", false},       // full-width digits
		{"123\u00a0456", 6, "", false}, // no-break space
		{"123456\x00", 6, "", false},
		{"password123456", 6, "", false},
		{"123456", 5, "", false},
		{"123456789", 9, "", false},
		{"12345", 5, "", false},
		{"123456", 0, "", false},
		{"123456", -6, "", false},
		{strings.Repeat(" ", 60) + "123456", 6, "", false},
		{strings.Repeat(" ", 58) + "123456", 6, "123456", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.answer, tt.digits), func(t *testing.T) {
			t.Parallel()
			got, ok := ParseCode(tt.answer, tt.digits)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseCode(%q, %d) = %q, %v, want %q, %v", tt.answer, tt.digits, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"123456", "123456", true},
		{"12345678", "12345678", true},
		{"123456", "123457", false},
		{"123456", "1234567", false},
		{"123456", "", false},
		{"", "123456", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			t.Parallel()
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		wantLen int
		wantErr error
	}{
		{"default", 0, DefaultSecretLen, nil},
		{"128 bit", 16, 16, nil},
		{"256 bit", 32, 32, nil},
		{"max", MaxSecretLen, MaxSecretLen, nil},
		{"80 bit is too few for new secrets", 10, 0, ErrSecretSize},
		{"too long", MaxSecretLen + 1, 0, ErrSecretSize},
		{"negative", -1, 0, ErrSecretSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := bytes.NewReader(bytes.Repeat([]byte{0xa5}, 200))
			b, err := NewSecret(r, tt.size)
			if !errors.Is(err, tt.wantErr) || len(b) != tt.wantLen {
				t.Fatalf("NewSecret(%d) = %d bytes, %v, want %d bytes, %v", tt.size, len(b), err, tt.wantLen, tt.wantErr)
			}
			if err == nil && !bytes.Equal(b, bytes.Repeat([]byte{0xa5}, tt.wantLen)) {
				t.Errorf("NewSecret(%d) = %x, want the reader's bytes", tt.size, b)
			}
		})
	}
	t.Run("short reader", func(t *testing.T) {
		t.Parallel()
		if b, err := NewSecret(bytes.NewReader(make([]byte, 19)), 0); err == nil {
			t.Errorf("NewSecret(19-byte reader) = %x, nil, want an error", b)
		}
	})
	t.Run("nil reader is crypto/rand", func(t *testing.T) {
		t.Parallel()
		a, err1 := NewSecret(nil, 0)
		b, err2 := NewSecret(nil, 0)
		if err1 != nil || err2 != nil || len(a) != DefaultSecretLen || bytes.Equal(a, b) {
			t.Errorf("NewSecret(nil) twice = %x, %v and %x, %v, want two different 20-byte secrets", a, err1, b, err2)
		}
	})
}

func TestEncodeSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []byte
		want string
	}{
		{seed20, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
		{[]byte("Hello!\xde\xad\xbe\xef"), "JBSWY3DPEHPK3PXP"},
		{[]byte("12345678901"), "GEZDGNBVGY3TQOJQGE"},
		{nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := EncodeSecret(tt.in); got != tt.want {
				t.Errorf("EncodeSecret(%x) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr error
	}{
		{"canonical", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", seed20, nil},
		{"lower case", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq", seed20, nil},
		{"groups of four", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", seed20, nil},
		{"dashes", "GEZDG-NBVGY-3TQOJ-QGEZD-GNBVG-Y3TQO-JQ", seed20, nil},
		{"spaces around", "  GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ ", seed20, nil},
		{"80 bit (Google Authenticator)", "JBSWY3DPEHPK3PXP", []byte("Hello!\xde\xad\xbe\xef"), nil},
		{"padded", "GEZDGNBVGY3TQOJQGE======", []byte("12345678901"), nil},
		{"unpadded", "GEZDGNBVGY3TQOJQGE", []byte("12345678901"), nil},
		{"padding then space", "GEZDGNBVGY3TQOJQGE====== ", []byte("12345678901"), nil},
		{"empty", "", nil, ErrSecretEncoding},
		{"only separators", " - - ", nil, ErrSecretEncoding},
		{"only padding", "========", nil, ErrSecretEncoding},
		{"digit 0", "GEZDGNBVGY3TQOJ0GEZDGNBVGY3TQOJQ", nil, ErrSecretEncoding},
		{"digit 1", "1EZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", nil, ErrSecretEncoding},
		{"digit 8", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ8", nil, ErrSecretEncoding},
		{"non-ASCII", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJÄ", nil, ErrSecretEncoding},
		{"tab", "GEZDGNBV\tGY3TQOJQGEZDGNBVGY3TQOJQ", nil, ErrSecretEncoding},
		{"underscore", "GEZDGNBV_GY3TQOJQGEZDGNBVGY3TQOJQ", nil, ErrSecretEncoding},
		{"padding inside", "GEZDGNBV=GY3TQOJQGEZDGNBVGY3TQOJQ", nil, ErrSecretEncoding},
		{"impossible length", "GEZDGNBVGY3TQOJQG", nil, ErrSecretEncoding},
		{"72 bit", "GEZDGNBVGY3TQOI", nil, ErrSecretSize},
		{"too long", strings.Repeat("A", (MaxSecretLen+1)*8/5+1), nil, ErrSecretSize},
		{"absurdly long", strings.Repeat("A", 1<<20), nil, ErrSecretSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeSecret(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) || !bytes.Equal(got, tt.want) {
				t.Fatalf("DecodeSecret(%.40q) = %x, %v, want %x, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && len(tt.in) >= 8 && strings.Contains(err.Error(), tt.in[:8]) {
				t.Errorf("DecodeSecret(%.40q) error %q repeats the input", tt.in, err)
			}
		})
	}
}
