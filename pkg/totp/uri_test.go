package totp

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pquerna/otp"
	pqtotp "github.com/pquerna/otp/totp"
)

func TestKeyURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		k    Key
		want string
	}{
		{
			"defaults",
			Key{"Example HPC", "alice", seed20, DefaultParams},
			"otpauth://totp/Example%20HPC:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20HPC&algorithm=SHA1&digits=6&period=30",
		},
		{
			"no issuer",
			Key{"", "alice", seed20, Params{SHA256, 8, 60}},
			"otpauth://totp/alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60",
		},
		{
			"reserved characters",
			Key{"AT&T Labs+HPC", "bob@cluster.example.org", []byte("Hello!\xde\xad\xbe\xef"), Params{SHA512, 7, 45}},
			"otpauth://totp/AT%26T%20Labs%2BHPC:bob@cluster.example.org?secret=JBSWY3DPEHPK3PXP&issuer=AT%26T%20Labs%2BHPC&algorithm=SHA512&digits=7&period=45",
		},
		{
			"non-ASCII",
			Key{"Universität", "jörg/ws?#%", seed20, DefaultParams},
			"otpauth://totp/Universit%C3%A4t:j%C3%B6rg%2Fws%3F%23%25?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Universit%C3%A4t&algorithm=SHA1&digits=6&period=30",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.k.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", tt.k, err)
			}
			got := tt.k.URI()
			if got != tt.want {
				t.Errorf("URI(%+v) =\n %s, want\n %s", tt.k, got, tt.want)
			}
			back, err := ParseURI(got)
			if err != nil || !reflect.DeepEqual(back, tt.k) {
				t.Errorf("ParseURI(%q) = %+v, %v, want %+v", got, back, err, tt.k)
			}
			// Another implementation, as apps have, reads the same key.
			pk, err := otp.NewKeyFromURL(got)
			if err != nil {
				t.Fatalf("pquerna NewKeyFromURL(%q): %v", got, err)
			}
			if pk.Issuer() != tt.k.Issuer || pk.AccountName() != tt.k.Account ||
				pk.Secret() != EncodeSecret(tt.k.Secret) || pk.Algorithm().String() != string(tt.k.Params.Algorithm) ||
				int(pk.Digits()) != tt.k.Params.Digits || int(pk.Period()) != tt.k.Params.Period {
				t.Errorf("pquerna reads %q as issuer %q account %q algorithm %v digits %v period %v, want %+v",
					got, pk.Issuer(), pk.AccountName(), pk.Algorithm(), pk.Digits(), pk.Period(), tt.k)
			}
		})
	}
}

// TestKeyShortURI: ShortURI leaves out the issuer parameter and the default
// parameters, and reads back, here and in pquerna, as the same key; with the
// issuer dropped it still reads back as the same secret, params and account.
func TestKeyShortURI(t *testing.T) {
	t.Parallel()
	const s20 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		name     string
		k        Key
		want     string
		noIssuer string // ShortURI of k without its issuer
	}{
		{
			"defaults",
			Key{"HPC", "alice", seed20, DefaultParams},
			"otpauth://totp/HPC:alice?secret=" + s20,
			"otpauth://totp/alice?secret=" + s20,
		},
		{
			"issuer with a space",
			Key{"HPC Centre", "alice", seed20, DefaultParams},
			"otpauth://totp/HPC%20Centre:alice?secret=" + s20,
			"otpauth://totp/alice?secret=" + s20,
		},
		{
			"no issuer",
			Key{"", "alice", seed20, DefaultParams},
			"otpauth://totp/alice?secret=" + s20,
			"otpauth://totp/alice?secret=" + s20,
		},
		{
			"algorithm only",
			Key{"HPC", "alice", seed20, Params{SHA256, 6, 30}},
			"otpauth://totp/HPC:alice?secret=" + s20 + "&algorithm=SHA256",
			"otpauth://totp/alice?secret=" + s20 + "&algorithm=SHA256",
		},
		{
			"digits only",
			Key{"HPC", "alice", seed20, Params{SHA1, 8, 30}},
			"otpauth://totp/HPC:alice?secret=" + s20 + "&digits=8",
			"otpauth://totp/alice?secret=" + s20 + "&digits=8",
		},
		{
			"period only",
			Key{"HPC", "alice", seed20, Params{SHA1, 6, 60}},
			"otpauth://totp/HPC:alice?secret=" + s20 + "&period=60",
			"otpauth://totp/alice?secret=" + s20 + "&period=60",
		},
		{
			"all parameters",
			Key{"HPC", "alice", seed20, Params{SHA512, 7, 45}},
			"otpauth://totp/HPC:alice?secret=" + s20 + "&algorithm=SHA512&digits=7&period=45",
			"otpauth://totp/alice?secret=" + s20 + "&algorithm=SHA512&digits=7&period=45",
		},
		{
			"reserved characters",
			Key{"AT&T Labs+HPC", "bob@cluster.example.org", []byte("Hello!\xde\xad\xbe\xef"), DefaultParams},
			"otpauth://totp/AT%26T%20Labs%2BHPC:bob@cluster.example.org?secret=JBSWY3DPEHPK3PXP",
			"otpauth://totp/bob@cluster.example.org?secret=JBSWY3DPEHPK3PXP",
		},
		{
			"non-ASCII and escapes in the account",
			Key{"Universität", "jörg/ws?#%&=", seed20, DefaultParams},
			"otpauth://totp/Universit%C3%A4t:j%C3%B6rg%2Fws%3F%23%25%26%3D?secret=" + s20,
			"otpauth://totp/j%C3%B6rg%2Fws%3F%23%25%26%3D?secret=" + s20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.k.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", tt.k, err)
			}
			got := tt.k.ShortURI()
			if got != tt.want {
				t.Errorf("ShortURI(%+v) =\n %s, want\n %s", tt.k, got, tt.want)
			}
			if full := tt.k.URI(); len(got) >= len(full) {
				t.Errorf("ShortURI(%+v) has %d bytes, URI %d: not shorter", tt.k, len(got), len(full))
			}
			back, err := ParseURI(got)
			if err != nil || !reflect.DeepEqual(back, tt.k) {
				t.Errorf("ParseURI(%q) = %+v, %v, want %+v", got, back, err, tt.k)
			}
			pk, err := otp.NewKeyFromURL(got)
			if err != nil {
				t.Fatalf("pquerna NewKeyFromURL(%q): %v", got, err)
			}
			if pk.Issuer() != tt.k.Issuer || pk.AccountName() != tt.k.Account ||
				pk.Secret() != EncodeSecret(tt.k.Secret) || pk.Algorithm().String() != string(tt.k.Params.Algorithm) ||
				int(pk.Digits()) != tt.k.Params.Digits || int(pk.Period()) != tt.k.Params.Period {
				t.Errorf("pquerna reads %q as issuer %q account %q algorithm %v digits %v period %v, want %+v",
					got, pk.Issuer(), pk.AccountName(), pk.Algorithm(), pk.Digits(), pk.Period(), tt.k)
			}

			bare := tt.k
			bare.Issuer = ""
			got = bare.ShortURI()
			if got != tt.noIssuer {
				t.Errorf("ShortURI(%+v) =\n %s, want\n %s", bare, got, tt.noIssuer)
			}
			back, err = ParseURI(got)
			if err != nil || back.Account != tt.k.Account || !bytes.Equal(back.Secret, tt.k.Secret) ||
				back.Params != tt.k.Params || back.Issuer != "" {
				t.Errorf("ParseURI(%q) = %+v, %v, want %+v without the issuer", got, back, err, tt.k)
			}
		})
	}
}

func TestKeyValidate(t *testing.T) {
	t.Parallel()
	good := Key{"Example HPC", "alice", seed20, DefaultParams}
	tests := []struct {
		name   string
		modify func(*Key)
		want   error
	}{
		{"good", func(*Key) {}, nil},
		{"no issuer", func(k *Key) { k.Issuer = "" }, nil},
		{"80-bit secret", func(k *Key) { k.Secret = seed20[:10] }, nil},
		{"no account", func(k *Key) { k.Account = "" }, ErrKey},
		{"colon in account", func(k *Key) { k.Account = "a:b" }, ErrKey},
		{"colon in issuer", func(k *Key) { k.Issuer = "HPC: Cluster" }, ErrKey},
		{"leading space", func(k *Key) { k.Account = " alice" }, ErrKey},
		{"trailing space", func(k *Key) { k.Issuer = "HPC " }, ErrKey},
		{"newline", func(k *Key) { k.Account = "alice\nroot" }, ErrKey},
		{"escape sequence", func(k *Key) { k.Issuer = "\x1b[2JHPC" }, ErrKey},
		{"C1 control", func(k *Key) { k.Issuer = "HPC\u009b" }, ErrKey},
		{"invalid UTF-8", func(k *Key) { k.Account = "al\xffice" }, ErrKey},
		{"long name", func(k *Key) { k.Account = strings.Repeat("a", MaxNameLen+1) }, ErrKey},
		{"longest name", func(k *Key) { k.Account = strings.Repeat("a", MaxNameLen) }, nil},
		{"short secret", func(k *Key) { k.Secret = seed20[:9] }, ErrSecretSize},
		{"no secret", func(k *Key) { k.Secret = nil }, ErrSecretSize},
		{"bad params", func(k *Key) { k.Params.Digits = 9 }, ErrDigits},
		{"zero params", func(k *Key) { k.Params = Params{} }, ErrAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := good
			tt.modify(&k)
			if err := k.Validate(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Validate(%+v) = %v, want %v", k, err, tt.want)
			}
		})
	}
}

func TestParseURI(t *testing.T) {
	t.Parallel()
	const sec = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		name string
		in   string
		want Key
	}{
		{"minimal", "otpauth://totp/alice?secret=" + sec, Key{"", "alice", seed20, DefaultParams}},
		{"Google example", "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
			Key{"Example", "alice@google.com", []byte("Hello!\xde\xad\xbe\xef"), DefaultParams}},
		{"issuer only in label", "otpauth://totp/HPC:alice?secret=" + sec, Key{"HPC", "alice", seed20, DefaultParams}},
		{"issuer only as parameter", "otpauth://totp/alice?issuer=HPC&secret=" + sec, Key{"HPC", "alice", seed20, DefaultParams}},
		{"encoded colon and space after it", "otpauth://totp/ACME%20Co%3A%20%20john.doe@email.com?secret=" + sec + "&issuer=ACME%20Co",
			Key{"ACME Co", "john.doe@email.com", seed20, DefaultParams}},
		{"plus is a space in parameters", "otpauth://totp/ACME%20Co:john?secret=" + sec + "&issuer=ACME+Co",
			Key{"ACME Co", "john", seed20, DefaultParams}},
		{"all parameters", "otpauth://totp/HPC:alice?secret=" + sec + "&issuer=HPC&algorithm=SHA512&digits=8&period=60",
			Key{"HPC", "alice", seed20, Params{SHA512, 8, 60}}},
		{"lower-case algorithm", "otpauth://totp/alice?secret=" + sec + "&algorithm=sha256",
			Key{"", "alice", seed20, Params{SHA256, 6, 30}}},
		{"lower-case padded secret", "otpauth://totp/alice?secret=gezdgnbvgy3tqojqge%3D%3D%3D%3D%3D%3D",
			Key{"", "alice", []byte("12345678901"), DefaultParams}},
		{"upper-case scheme and type", "OTPAUTH://TOTP/alice?secret=" + sec, Key{"", "alice", seed20, DefaultParams}},
		{"unknown parameters ignored", "otpauth://totp/alice?secret=" + sec + "&image=https%3A%2F%2Fx%2Fy.png&color=red",
			Key{"", "alice", seed20, DefaultParams}},
		{"empty encoder", "otpauth://totp/alice?secret=" + sec + "&encoder=", Key{"", "alice", seed20, DefaultParams}},
		{"pquerna style (sorted, PathEscape)",
			"otpauth://totp/Example%20HPC:alice?algorithm=SHA1&digits=6&issuer=Example%20HPC&period=30&secret=" + sec,
			Key{"Example HPC", "alice", seed20, DefaultParams}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseURI(tt.in)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseURI(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseURIRejects(t *testing.T) {
	t.Parallel()
	const sec = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrURI},
		{"not a URI", "%zz", ErrURI},
		{"https", "https://totp/alice?secret=" + sec, ErrURI},
		{"no scheme", "totp/alice?secret=" + sec, ErrURI},
		{"opaque", "otpauth:totp/alice?secret=" + sec, ErrURI},
		{"hotp", "otpauth://hotp/alice?secret=" + sec + "&counter=0", ErrURI},
		{"unknown type", "otpauth://motp/alice?secret=" + sec, ErrURI},
		{"port", "otpauth://totp:443/alice?secret=" + sec, ErrURI},
		{"user", "otpauth://x@totp/alice?secret=" + sec, ErrURI},
		{"fragment", "otpauth://totp/alice?secret=" + sec + "#x", ErrURI},
		{"no label", "otpauth://totp?secret=" + sec, ErrURI},
		{"empty label", "otpauth://totp/?secret=" + sec, ErrURI},
		{"empty account", "otpauth://totp/HPC:?secret=" + sec, ErrKey},
		{"empty issuer in label", "otpauth://totp/:alice?secret=" + sec, ErrURI},
		{"two colons", "otpauth://totp/HPC:alice:x?secret=" + sec, ErrKey},
		{"issuer mismatch", "otpauth://totp/HPC:alice?secret=" + sec + "&issuer=Other", ErrURI},
		{"empty issuer parameter", "otpauth://totp/alice?secret=" + sec + "&issuer=", ErrURI},
		{"control character in label", "otpauth://totp/ali%1Bce?secret=" + sec, ErrKey},
		{"newline in issuer", "otpauth://totp/alice?secret=" + sec + "&issuer=a%0Ab", ErrKey},
		{"invalid UTF-8", "otpauth://totp/al%FFice?secret=" + sec, ErrKey},
		{"bad escape", "otpauth://totp/alice?secret=" + sec + "&issuer=%zz", ErrURI},
		{"semicolon", "otpauth://totp/alice?secret=" + sec + ";digits=8", ErrURI},
		{"missing secret", "otpauth://totp/alice?issuer=HPC", ErrURI},
		{"empty secret", "otpauth://totp/alice?secret=", ErrURI},
		{"two secrets", "otpauth://totp/alice?secret=" + sec + "&secret=" + sec, ErrURI},
		{"secret not base32", "otpauth://totp/alice?secret=GEZDGNBVGY3TQOJ0", ErrSecretEncoding},
		{"secret too short", "otpauth://totp/alice?secret=GEZDGNBVGY3TQOI", ErrSecretSize},
		{"secret too long", "otpauth://totp/alice?secret=" + strings.Repeat("A", 208), ErrSecretSize},
		{"digits 5", "otpauth://totp/alice?secret=" + sec + "&digits=5", ErrDigits},
		{"digits 9", "otpauth://totp/alice?secret=" + sec + "&digits=9", ErrDigits},
		{"digits empty", "otpauth://totp/alice?secret=" + sec + "&digits=", ErrURI},
		{"digits sign", "otpauth://totp/alice?secret=" + sec + "&digits=%2B6", ErrURI},
		{"digits hex", "otpauth://totp/alice?secret=" + sec + "&digits=0x6", ErrURI},
		{"digits huge", "otpauth://totp/alice?secret=" + sec + "&digits=99999999999999999999", ErrURI},
		{"two digits", "otpauth://totp/alice?secret=" + sec + "&digits=6&digits=8", ErrURI},
		{"period 0", "otpauth://totp/alice?secret=" + sec + "&period=0", ErrPeriod},
		{"period 1", "otpauth://totp/alice?secret=" + sec + "&period=1", ErrPeriod},
		{"period negative", "otpauth://totp/alice?secret=" + sec + "&period=-30", ErrURI},
		{"period with unit", "otpauth://totp/alice?secret=" + sec + "&period=30s", ErrURI},
		{"MD5", "otpauth://totp/alice?secret=" + sec + "&algorithm=MD5", ErrAlgorithm},
		{"SHA-1 spelling", "otpauth://totp/alice?secret=" + sec + "&algorithm=SHA-1", ErrAlgorithm},
		{"empty algorithm", "otpauth://totp/alice?secret=" + sec + "&algorithm=", ErrAlgorithm},
		{"steam encoder", "otpauth://totp/alice?secret=" + sec + "&encoder=steam", ErrURI},
		{"long name", "otpauth://totp/" + strings.Repeat("a", MaxNameLen+1) + "?secret=" + sec, ErrKey},
		{"huge", "otpauth://totp/alice?secret=" + sec + "&x=" + strings.Repeat("a", MaxURILen), ErrURI},
		{"huge secret", "otpauth://totp/alice?secret=" + strings.Repeat("A", 1<<20), ErrURI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseURI(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseURI(%.80q) = %+v, %v, want %v", tt.in, got, err, tt.want)
			}
			if !reflect.DeepEqual(got, Key{}) {
				t.Errorf("ParseURI(%.80q) = %+v with an error, want the zero Key", tt.in, got)
			}
			if strings.Contains(err.Error(), sec) || strings.Contains(err.Error(), sec[:16]) {
				t.Errorf("ParseURI(%.80q) error %q contains the secret", tt.in, err)
			}
		})
	}
}

// TestParseURIPquernaKeys reads keys made by github.com/pquerna/otp, whose
// URIs have sorted parameters and path-escaped values.
func TestParseURIPquernaKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts pqtotp.GenerateOpts
		want Key
	}{
		{"default", pqtotp.GenerateOpts{Issuer: "Example HPC", AccountName: "alice", Secret: seed20},
			Key{"Example HPC", "alice", seed20, DefaultParams}},
		{"SHA512 8 digits 60 s", pqtotp.GenerateOpts{Issuer: "HPC", AccountName: "bob@x.org", Secret: seed64,
			Algorithm: otp.AlgorithmSHA512, Digits: otp.DigitsEight, Period: 60},
			Key{"HPC", "bob@x.org", seed64, Params{SHA512, 8, 60}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pk, err := pqtotp.Generate(tt.opts)
			if err != nil {
				t.Fatalf("pquerna Generate: %v", err)
			}
			got, err := ParseURI(pk.String())
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseURI(%q) = %+v, %v, want %+v", pk.String(), got, err, tt.want)
			}
		})
	}
}

// TestURIRoundTripRandom: for valid keys, ParseURI(k.URI()) and
// ParseURI(k.ShortURI()) are k.
func TestURIRoundTripRandom(t *testing.T) {
	t.Parallel()
	names := []string{"", "a", "HPC", "Example HPC", "Universität Zürich", "AT&T", "a+b=c?d#e%f/g",
		"alice@example.org", "日本語", "x y z", "~._-", "emoji 🔑", strings.Repeat("n", MaxNameLen)}
	for i, issuer := range names {
		for j, account := range names[1:] {
			secret := bytes.Repeat([]byte{byte(i), byte(j)}, MinSecretLen/2+i+j)
			k := Key{issuer, account, secret, Params{[]Algorithm{SHA1, SHA256, SHA512}[(i+j)%3], 6 + (i+j)%3, 15 + 15*j}}
			if err := k.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v", k, err)
			}
			for _, u := range []string{k.URI(), k.ShortURI()} {
				if got, err := ParseURI(u); err != nil || !reflect.DeepEqual(got, k) {
					t.Errorf("ParseURI(%q) = %+v, %v, want %+v", u, got, err, k)
				}
			}
		}
	}
}
