package token

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// MaxNameLen is the longest token name, in bytes.
const MaxNameLen = 64

// IDLen is the number of random bytes of a token id (shown as twice as many hex digits).
const IDLen = 4

// CheckName validates a token name chosen by a user or an admin or read from an import file:
// 1 to 64 bytes of printable UTF-8 (see Printable). Its error is meant for a person.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("token name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("token name is longer than %d bytes", MaxNameLen)
	case !Printable(name):
		return errors.New("token name contains control or format characters or invalid UTF-8")
	}
	return nil
}

// NewID returns a random token id (8 hex digits read from rand) that taken does not report as
// used.
func NewID(rand io.Reader, taken func(string) bool) (string, error) {
	b := make([]byte, IDLen)
	for range 100 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return "", fmt.Errorf("random token id: %w", err)
		}
		if id := hex.EncodeToString(b); !taken(id) {
			return id, nil
		}
	}
	return "", errors.New("cannot find a free token id")
}

// DefaultName is "token-N" with the lowest N >= len(tokens)+1 that no token of the user has.
func DefaultName(tokens []Token) string {
	used := map[string]bool{}
	for _, t := range tokens {
		used[t.Name] = true
	}
	for n := len(tokens) + 1; ; n++ {
		if name := "token-" + strconv.Itoa(n); !used[name] {
			return name
		}
	}
}

// HasID reports whether one of tokens has the id.
func HasID(tokens []Token, id string) bool {
	return slices.ContainsFunc(tokens, func(t Token) bool { return t.ID == id })
}
