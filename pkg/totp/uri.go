package totp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on otpauth URIs and the names in them.
const (
	MaxNameLen = 128  // bytes of an issuer or account name
	MaxURILen  = 2048 // bytes of an otpauth URI; a maximal valid one has about 1,500
)

// Key is a TOTP token as an authenticator app sees it.
type Key struct {
	Issuer  string // who issued the token, e.g. "Example HPC"; optional
	Account string // whose token it is, e.g. "alice"; required
	Secret  []byte
	Params  Params
}

// Validate reports whether k can be written as an otpauth URI and read back
// unchanged: a valid secret and Params, a non-empty account, and names of at
// most MaxNameLen bytes of printable UTF-8 without ':' (the label separator)
// and without leading or trailing spaces.
func (k Key) Validate() error {
	if err := validName("issuer", k.Issuer); err != nil {
		return err
	}
	if k.Account == "" {
		return fmt.Errorf("%w: missing account name", ErrKey)
	}
	if err := validName("account name", k.Account); err != nil {
		return err
	}
	if n := len(k.Secret); n < MinSecretLen || n > MaxSecretLen {
		return fmt.Errorf("%w: %d bytes; want %d to %d", ErrSecretSize, n, MinSecretLen, MaxSecretLen)
	}
	return k.Params.Validate()
}

func validName(what, s string) error {
	switch {
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrKey, what, MaxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrKey, what)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%w: %s starts or ends with a space", ErrKey, what)
	case strings.ContainsRune(s, ':'):
		return fmt.Errorf("%w: %s contains ':'", ErrKey, what)
	}
	for _, r := range s {
		// C0, DEL and C1 controls would reach the user's terminal.
		if r < 0x20 || (0x7f <= r && r < 0xa0) {
			return fmt.Errorf("%w: %s contains a control character", ErrKey, what)
		}
	}
	return nil
}

// URI returns k as an otpauth URI in the Key Uri Format:
//
//	otpauth://totp/Issuer:Account?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30
//
// The issuer (in the label and as a parameter) is left out when empty.
// Everything but unreserved characters (and '@' in the label) is
// percent-encoded, spaces as %20, which every app reads. URI does not
// validate; call [Key.Validate] first. The result holds the secret: never
// log it.
func (k Key) URI() string {
	var b strings.Builder
	b.Grow(64 + 3*len(k.Issuer)*2 + 3*len(k.Account) + len(k.Secret)*8/5)
	k.labelAndSecret(&b)
	if k.Issuer != "" {
		b.WriteString("&issuer=")
		escape(&b, k.Issuer, false)
	}
	b.WriteString("&algorithm=")
	escape(&b, string(k.Params.Algorithm), false)
	b.WriteString("&digits=")
	b.WriteString(strconv.Itoa(k.Params.Digits))
	b.WriteString("&period=")
	b.WriteString(strconv.Itoa(k.Params.Period))
	return b.String()
}

// ShortURI returns the shortest otpauth URI of k, for a QR code that must be
// small (qrterm's ASCII mode in 80 columns):
//
//	otpauth://totp/Issuer:Account?secret=...
//
// The label is the one of [Key.URI]; algorithm, digits and period follow the
// secret only where they differ from DefaultParams, which the Key Uri Format
// makes the defaults; there is no issuer parameter. The issuer stays as the
// label prefix, from which apps take it when the parameter is absent (the
// Key Uri Format notes that older Google Authenticator versions read it only
// there; FreeOTP and Aegis split the label at ':' too). ParseURI returns k
// again for every valid k. Elsewhere use URI, whose issuer parameter the
// format recommends.
//
// For a URI shorter still, call ShortURI on a copy of k with an empty
// Issuer: the label is then the account name alone, the same key, which an
// app shows without the issuer.
//
// Like URI, ShortURI does not validate, and the result holds the secret:
// never log it.
func (k Key) ShortURI() string {
	var b strings.Builder
	b.Grow(48 + 3*len(k.Issuer) + 3*len(k.Account) + len(k.Secret)*8/5)
	k.labelAndSecret(&b)
	if k.Params.Algorithm != DefaultParams.Algorithm {
		b.WriteString("&algorithm=")
		escape(&b, string(k.Params.Algorithm), false)
	}
	if k.Params.Digits != DefaultParams.Digits {
		b.WriteString("&digits=")
		b.WriteString(strconv.Itoa(k.Params.Digits))
	}
	if k.Params.Period != DefaultParams.Period {
		b.WriteString("&period=")
		b.WriteString(strconv.Itoa(k.Params.Period))
	}
	return b.String()
}

// labelAndSecret writes the start both URIs share: scheme, label and the secret parameter.
func (k Key) labelAndSecret(b *strings.Builder) {
	b.WriteString("otpauth://totp/")
	if k.Issuer != "" {
		escape(b, k.Issuer, true)
		b.WriteByte(':')
	}
	escape(b, k.Account, true)
	b.WriteString("?secret=")
	b.WriteString(EncodeSecret(k.Secret))
}

// escape percent-encodes s into b, keeping RFC 3986 unreserved characters
// and, in a label, '@' (as in alice@example.org).
func escape(b *strings.Builder, s string, label bool) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || (label && c == '@') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
}

// ParseURI parses an otpauth://totp/ URI from an untrusted source, such as
// an import of existing tokens. It is strict: the scheme and type must be
// otpauth and totp (hotp is refused), there must be no user, port or
// fragment, the secret must decode as in [DecodeSecret], a parameter that is
// present must be valid (algorithm SHA1, SHA256 or SHA512 in any case;
// digits MinDigits..MaxDigits; period MinPeriod..MaxPeriod), no parameter
// may repeat, an issuer in both the label and the issuer parameter must be
// the same, and the result must pass [Key.Validate]. Absent parameters take
// their values from DefaultParams. Parameters other apps add (image, color,
// ...) are ignored, but encoder= is refused as it changes the codes.
//
// Errors wrap ErrURI (or the error of the part that is invalid) and never
// contain the secret.
func ParseURI(s string) (Key, error) {
	if len(s) > MaxURILen {
		return Key{}, fmt.Errorf("%w: longer than %d bytes", ErrURI, MaxURILen)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the input, which holds the secret.
		return Key{}, fmt.Errorf("%w: not a URI", ErrURI)
	}
	if u.Scheme != "otpauth" {
		return Key{}, fmt.Errorf("%w: scheme is not otpauth", ErrURI)
	}
	if u.Opaque != "" || u.User != nil || u.Fragment != "" || u.RawFragment != "" {
		return Key{}, fmt.Errorf("%w: want otpauth://totp/label?parameters", ErrURI)
	}
	switch strings.ToLower(u.Host) {
	case "totp":
	case "hotp":
		return Key{}, fmt.Errorf("%w: counter-based (hotp) keys are not supported", ErrURI)
	default:
		return Key{}, fmt.Errorf("%w: key type is not totp", ErrURI)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Key{}, fmt.Errorf("%w: malformed parameters", ErrURI)
	}
	for name, v := range q {
		if len(v) > 1 {
			return Key{}, fmt.Errorf("%w: parameter %q appears %d times", ErrURI, short(name), len(v))
		}
	}
	param := func(name string) (string, bool) {
		v, ok := q[name]
		if !ok {
			return "", false
		}
		return v[0], true
	}

	k := Key{Params: DefaultParams}
	label, ok := strings.CutPrefix(u.Path, "/")
	if !ok || label == "" {
		return Key{}, fmt.Errorf("%w: missing label (account name)", ErrURI)
	}
	if issuer, account, ok := strings.Cut(label, ":"); ok {
		// The Key Uri Format allows spaces after the colon.
		k.Issuer, k.Account = issuer, strings.TrimLeft(account, " ")
		if k.Issuer == "" {
			return Key{}, fmt.Errorf("%w: empty issuer before ':' in the label", ErrURI)
		}
	} else {
		k.Account = label
	}
	if v, ok := param("issuer"); ok {
		switch {
		case v == "":
			return Key{}, fmt.Errorf("%w: empty issuer parameter", ErrURI)
		case k.Issuer == "":
			k.Issuer = v
		case k.Issuer != v:
			return Key{}, fmt.Errorf("%w: issuer in label and issuer parameter differ", ErrURI)
		}
	}

	v, ok := param("secret")
	if !ok || v == "" {
		return Key{}, fmt.Errorf("%w: missing secret", ErrURI)
	}
	if k.Secret, err = DecodeSecret(v); err != nil {
		return Key{}, fmt.Errorf("otpauth URI: %w", err)
	}
	if v, ok := param("algorithm"); ok {
		switch strings.ToUpper(v) {
		case "SHA1":
			k.Params.Algorithm = SHA1
		case "SHA256":
			k.Params.Algorithm = SHA256
		case "SHA512":
			k.Params.Algorithm = SHA512
		default:
			return Key{}, fmt.Errorf("%w %q (want SHA1, SHA256 or SHA512)", ErrAlgorithm, short(v))
		}
	}
	if v, ok := param("digits"); ok {
		if k.Params.Digits, err = smallUint("digits", v); err != nil {
			return Key{}, err
		}
	}
	if v, ok := param("period"); ok {
		if k.Params.Period, err = smallUint("period", v); err != nil {
			return Key{}, err
		}
	}
	if v, ok := param("encoder"); ok && v != "" {
		return Key{}, fmt.Errorf("%w: encoder %q is not supported", ErrURI, short(v))
	}
	if err := k.Validate(); err != nil {
		return Key{}, fmt.Errorf("otpauth URI: %w", err)
	}
	return k, nil
}

// smallUint parses 1 to 4 ASCII digits; range checks are Params.Validate's.
func smallUint(name, v string) (int, error) {
	if len(v) == 0 || len(v) > 4 || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %s %q is not a small decimal number", ErrURI, name, short(v))
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a small decimal number", ErrURI, name, short(v))
	}
	return n, nil
}

// short cuts a value from an untrusted URI for an error message, so that a
// hostile URI cannot fill a log line.
func short(v string) string {
	const n = 16
	if len(v) <= n {
		return v
	}
	return v[:n] + "..."
}
