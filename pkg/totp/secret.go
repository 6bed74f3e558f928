package totp

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
)

// Secret sizes in bytes.
//
// MinSecretLen (80 bits) is the least a decoded secret may have: Google
// Authenticator's own secrets were 80 bits for years and sites migrate such
// tokens. MinNewSecretLen (128 bits) is RFC 4226's minimum and the least
// NewSecret makes; DefaultSecretLen (160 bits) is RFC 4226's recommendation.
// MaxSecretLen (1024 bits) is the HMAC-SHA512 block size; longer keys would
// only be hashed down and make QR codes needlessly large.
const (
	MinSecretLen     = 10
	MinNewSecretLen  = 16
	DefaultSecretLen = 20
	MaxSecretLen     = 128
)

// maxSecretText bounds the base32 text DecodeSecret looks at: the longest
// secret in base32 with a separator after every character and padding.
const maxSecretText = 2 * ((MaxSecretLen*8+4)/5 + 8)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns size random bytes read from r (crypto/rand.Reader if r
// is nil). A size of 0 means DefaultSecretLen; sizes below MinNewSecretLen or
// above MaxSecretLen are refused.
func NewSecret(r io.Reader, size int) ([]byte, error) {
	if size == 0 {
		size = DefaultSecretLen
	}
	if size < MinNewSecretLen || size > MaxSecretLen {
		return nil, fmt.Errorf("%w: new secrets have %d to %d bytes, not %d",
			ErrSecretSize, MinNewSecretLen, MaxSecretLen, size)
	}
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("totp: read random secret: %w", err)
	}
	return b, nil
}

// EncodeSecret returns b in RFC 4648 base32: upper case, without padding,
// the form authenticator apps expect.
func EncodeSecret(b []byte) string {
	return b32.EncodeToString(b)
}

// DecodeSecret decodes a base32 secret as people and other systems write
// it: upper or lower case, grouped with spaces or dashes ("jbsw y3dp ..."),
// with or without '=' padding at the end. The result must have
// MinSecretLen to MaxSecretLen bytes. Errors say where the text is wrong but
// never repeat it.
func DecodeSecret(s string) ([]byte, error) {
	if len(s) > maxSecretText {
		return nil, fmt.Errorf("%w: %d characters is far more than a %d-byte secret",
			ErrSecretSize, len(s), MaxSecretLen)
	}
	clean := make([]byte, 0, len(s))
	padded := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-':
			continue
		case c == '=':
			padded = true
			continue
		case padded:
			return nil, fmt.Errorf("%w: character %d follows the '=' padding", ErrSecretEncoding, i+1)
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case 'A' <= c && c <= 'Z', '2' <= c && c <= '7':
		case c == '0' || c == '1' || c == '8' || c == '9':
			return nil, fmt.Errorf("%w: character %d is the digit %c (base32 uses only A-Z and 2-7)",
				ErrSecretEncoding, i+1, c)
		default:
			return nil, fmt.Errorf("%w: character %d is not in A-Z or 2-7", ErrSecretEncoding, i+1)
		}
		clean = append(clean, c)
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("%w: the secret is empty", ErrSecretEncoding)
	}
	switch len(clean) % 8 {
	case 1, 3, 6:
		// encoding/base32 without padding silently drops such a last
		// character; it cannot be the end of any encoded byte string.
		return nil, fmt.Errorf("%w: %d characters is not a whole number of bytes",
			ErrSecretEncoding, len(clean))
	}
	b := make([]byte, b32.DecodedLen(len(clean)))
	n, err := b32.Decode(b, clean)
	if err != nil {
		var ce base32.CorruptInputError
		if errors.As(err, &ce) {
			// With the alphabet checked above, only the length can be wrong.
			return nil, fmt.Errorf("%w: %d characters is not a whole number of bytes",
				ErrSecretEncoding, len(clean))
		}
		return nil, fmt.Errorf("%w: %v", ErrSecretEncoding, err)
	}
	b = b[:n]
	if n < MinSecretLen || n > MaxSecretLen {
		return nil, fmt.Errorf("%w: %d bytes (%d bits); want %d to %d bytes",
			ErrSecretSize, n, n*8, MinSecretLen, MaxSecretLen)
	}
	return b, nil
}
