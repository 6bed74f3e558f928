// Package backupcode makes and checks single-use backup codes.
//
// A code is 16 characters of Crockford's base32 (80 random bits), shown as four groups of four
// ("7k2q-m9xd-4hpt-b1zc"). Typing is forgiving: case, spaces and dashes do not matter, and the
// letters i, l and o read as 1, 1 and 0. Only a salted SHA-256 of the normalised code is stored;
// 80 random bits need no slow hash. Codes imported from google-authenticator (8 digits, about 27
// bits) are kept as they are, so they are weaker than ours and a site should regenerate them.
package backupcode

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
)

const (
	alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	// Length is the number of characters of a generated code (5 bits each).
	Length = 16
	// Count is how many codes a fresh set has.
	Count = 10
	// MaxLen bounds what Normalize accepts; longer answers are not backup codes.
	MaxLen = 64
)

// New returns n fresh codes for user, as the plain text to show once and the records to store.
func New(r io.Reader, user string, n int, now time.Time) ([]string, []token.BackupCode, error) {
	plain := make([]string, 0, n)
	recs := make([]token.BackupCode, 0, n)
	for i := 0; i < n; i++ {
		raw := make([]byte, Length)
		if _, err := io.ReadFull(r, raw); err != nil {
			return nil, nil, fmt.Errorf("random backup code: %w", err)
		}
		var b strings.Builder
		for j, v := range raw {
			if j > 0 && j%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(alphabet[v&31])
		}
		code := b.String()
		rec, err := Record(r, user, code, now)
		if err != nil {
			return nil, nil, err
		}
		plain = append(plain, code)
		recs = append(recs, rec)
	}
	return plain, recs, nil
}

// Record hashes one code (ours or imported) into a store record with a fresh salt and id.
func Record(r io.Reader, user, code string, now time.Time) (token.BackupCode, error) {
	norm, ok := Normalize(code)
	if !ok {
		return token.BackupCode{}, fmt.Errorf("backup code for %s: not a code", user)
	}
	buf := make([]byte, 16+6)
	if _, err := io.ReadFull(r, buf); err != nil {
		return token.BackupCode{}, fmt.Errorf("random salt: %w", err)
	}
	salt := buf[:16]
	return token.BackupCode{
		User: user, ID: hex.EncodeToString(buf[16:]), Salt: salt,
		Hash: hash(salt, norm), Created: now.UTC(),
	}, nil
}

// Normalize folds an answer into the form that is hashed. ok is false when the answer cannot be
// a backup code (empty, too long, or a character outside the alphabet).
func Normalize(s string) (string, bool) {
	if len(s) > MaxLen {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-' || c == '\t':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		switch c {
		case 'i', 'l':
			c = '1'
		case 'o':
			c = '0'
		}
		if strings.IndexByte(alphabet, c) < 0 {
			return "", false
		}
		b.WriteByte(c)
	}
	if b.Len() < 6 {
		return "", false
	}
	return b.String(), true
}

// Match reports, in constant time for a given record, whether the normalised code is rec's.
func Match(norm string, rec token.BackupCode) bool {
	return subtle.ConstantTimeCompare(hash(rec.Salt, norm), rec.Hash) == 1
}

func hash(salt []byte, norm string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(norm))
	return h.Sum(nil)
}
