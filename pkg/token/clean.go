package token

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean makes text from a store, an import file, the bus or the network safe to print on a
// terminal: every rune that Printable refuses becomes '?'. Text that is already clean is returned
// as it is.
func Clean(s string) string {
	if Printable(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unsafeRune(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Printable reports whether s is valid UTF-8 that Clean leaves unchanged: no control codes (C0,
// DEL, C1), no Unicode format characters (category Cf: bidirectional overrides, marks and
// isolates, zero-width characters), no line or paragraph separators, no U+FFFD.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unsafeRune(r) {
			return false
		}
	}
	return true
}

func unsafeRune(r rune) bool {
	switch {
	case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r):
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators (categories Zl, Zp)
		return true
	}
	return false
}
