// Package qrterm draws QR codes, such as a token's otpauth URI, in a
// terminal, so that a user enrolling over SSH can scan them with a phone.
//
// The layout is github.com/mdp/qrterminal's; this package picks the
// characters, the colours and the size checks.
//
// # What a scanner needs, and the choices made here
//
// Polarity: a QR code is dark modules on a light background, and many
// scanners (ZXing and the apps built on it) do not read it inverted. A
// terminal may be light on dark or dark on light, and nothing tells which.
// So every line sets its own colours with SGR escapes (light grey on black,
// codes 37 and 40, which every ANSI terminal including the Linux console and
// PuTTY has), draws the light modules and the quiet zone as ink, and resets
// the colours before the newline. With colours, the code scans on dark and
// light themes alike. A terminal that ignores colours still shows a correct
// half- or full-block code if its background is dark, the default of PuTTY,
// the Linux console and most terminal programs; in ASCII mode the thin ink
// of '#' is then too faint to scan, so ASCII mode relies on the colours.
//
// Shape: terminal cells are about twice as tall as wide. Modules must stay
// square: ZXing rejects finder patterns whose height and width differ by
// more than 40%. HalfBlocks draws one module per column and two per row with
// ▀ ▄ █; FullBlocks and ASCII draw each module two columns wide.
//
// Size: error correction level L (7%) gives the smallest code. A code on a
// screen is not smudged or torn, which is what higher levels pay for, and
// smaller means larger modules on the phone's camera and a code that fits in
// 24 rows: a typical otpauth URI (about 110 bytes) is version 6, 41 modules,
// 23 rows with half blocks; at level M it would be version 7 and 25 rows.
// The quiet zone is 2 modules instead of the standard 4, as
// google-authenticator has drawn it for years: it saves 4 columns and 2 rows
// and every common scanner reads it.
//
// ASCII mode and 80 columns: with square modules two columns wide, a code
// fits 80 columns only up to version 4 (33 modules + quiet zone = 74
// columns), which holds 78 bytes at level L. One column per module would fit
// more, but gives modules twice as tall as wide, which ZXing-based scanners
// reject. A full otpauth URI (about 110 bytes) is longer, so [Write] refuses
// it (ErrTooWide) rather than print a code that cannot be scanned.
// [WriteKey] draws a key instead: the full URI where it fits, and otherwise
// the same key in fewer bytes, [totp.Key.ShortURI] (no issuer parameter and
// no parameters at their defaults; the issuer stays as the label prefix),
// then that without the issuer. With default parameters and a 160-bit secret
// (32 base32 characters) the short URI fits when its label, percent-encoded,
// is at most 23 bytes. With the issuer "HPC Centre", the account "alice"
// fits ("HPC%20Centre:alice" is 18 bytes), a 16-character account fits only
// without the issuer, and an account of 24 characters fits in no form:
// WriteKey then returns ErrTooWide, and callers show the key as text and
// suggest half or full blocks.
package qrterm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mdp/qrterminal/v3"
	"rsc.io/qr"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Mode is how modules are drawn.
type Mode int

const (
	// HalfBlocks draws two rows of modules per line with the UTF-8 half
	// blocks ▀ ▄ █: the most compact, and the default.
	HalfBlocks Mode = iota
	// FullBlocks draws each module as two full blocks ██, for terminals
	// whose fonts draw half blocks badly or with gaps. Twice as wide and
	// twice as tall as HalfBlocks.
	FullBlocks
	// ASCII draws each module as "##" or two spaces on a light or dark
	// background colour, for terminals or locales without UTF-8. Limited
	// to ASCIIColumns, and it needs colours to be scannable.
	ASCII
)

// Layout constants.
const (
	QuietZone    = 2  // modules of light border on each side
	ASCIIColumns = 80 // widest ASCII output Write produces
	level        = qr.L
)

// Errors of Write. Their messages never contain the content.
var (
	// ErrTooLong: the content does not fit in any QR code.
	ErrTooLong = errors.New("qrterm: too much data for a QR code")
	// ErrTooWide: the code would be wider than ASCIIColumns in ASCII mode.
	ErrTooWide = errors.New("qrterm: QR code too wide for the terminal")
)

// SGR escapes: the colours of a line, light and dark cells in ASCII mode,
// and the reset before each newline.
const (
	sgrLine  = "\x1b[0;37;40m"
	sgrLight = "\x1b[47m"
	sgrDark  = "\x1b[40m"
	sgrReset = "\x1b[0m"
)

func (m Mode) String() string {
	switch m {
	case HalfBlocks:
		return "half"
	case FullBlocks:
		return "full"
	case ASCII:
		return "ascii"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "half", "full" or "ascii" (in any case), the names that
// Mode.String returns.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{HalfBlocks, FullBlocks, ASCII} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("qrterm: unknown QR code mode %q (want half, full or ascii)", s)
}

// DetectMode picks a mode from $TERM and whether the locale's character set
// is UTF-8 (see [LocaleIsUTF8]):
//
//   - not UTF-8: ASCII; the terminal may not decode the half blocks.
//   - TERM unset or "dumb" (no terminal, an editor's shell buffer): ASCII.
//   - TERM of a hardware terminal or its bare emulation (vt52, vt100, vt102,
//     vt220, vt320, vt420, ansi): ASCII; they have no block glyphs.
//   - anything else, including "linux": HalfBlocks. The Linux console's
//     built-in font is CP437, whose Unicode map has ▀ ▄ █, and the console
//     is often 80 columns, where only half blocks fit a full otpauth URI.
//
// FullBlocks is never picked; it is for users whose terminal draws half
// blocks badly.
func DetectMode(term string, utf8 bool) Mode {
	if !utf8 {
		return ASCII
	}
	switch term {
	case "", "dumb", "vt52", "vt100", "vt102", "vt220", "vt320", "vt420", "ansi":
		return ASCII
	}
	return HalfBlocks
}

// LocaleIsUTF8 reports whether the locale that getenv (usually os.Getenv)
// describes has the UTF-8 character set: the first set of LC_ALL, LC_CTYPE
// and LANG names a charset "UTF-8" or "utf8" in any case. An unset locale
// is POSIX, which is not UTF-8.
func LocaleIsUTF8(getenv func(string) string) bool {
	for _, name := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		v := getenv(name)
		if v == "" {
			continue
		}
		_, charset, ok := strings.Cut(v, ".")
		if !ok {
			return false
		}
		charset, _, _ = strings.Cut(charset, "@")
		return strings.EqualFold(charset, "UTF-8") || strings.EqualFold(charset, "UTF8")
	}
	return false
}

// Size returns the columns and lines Write needs for content in mode m, or
// the error Write would return.
func Size(content string, m Mode) (cols, lines int, err error) {
	code, err := encode(content)
	if err != nil {
		return 0, 0, err
	}
	return size(code.Size, m)
}

func size(modules int, m Mode) (cols, lines int, err error) {
	n := modules + 2*QuietZone
	switch m {
	case HalfBlocks:
		return n, (n + 1) / 2, nil
	case FullBlocks:
		return 2 * n, n, nil
	case ASCII:
		if 2*n > ASCIIColumns {
			return 0, 0, fmt.Errorf("%w: %d columns in ASCII mode, more than %d; "+
				"use half or full blocks, or enter the key by hand", ErrTooWide, 2*n, ASCIIColumns)
		}
		return 2 * n, n, nil
	}
	return 0, 0, fmt.Errorf("qrterm: unknown mode %d", int(m))
}

func encode(content string) (*qr.Code, error) {
	if content == "" {
		return nil, errors.New("qrterm: nothing to encode")
	}
	code, err := qr.Encode(content, level)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(content))
	}
	return code, nil
}

// Write draws content as a QR code (level L, 2-module quiet zone) in mode m
// and writes it to w in a single Write call, one line per row of text, each
// line setting its colours and resetting them before the newline. Nothing
// is written if the code cannot be drawn: content empty or too long for a
// QR code (ErrTooLong), or in ASCII mode wider than ASCIIColumns
// (ErrTooWide, for any content over 78 bytes, which includes full otpauth
// URIs; [WriteKey] falls back to shorter ones). The content may be a secret;
// no error contains it.
func Write(w io.Writer, content string, m Mode) error {
	code, err := encode(content)
	if err != nil {
		return err
	}
	if _, _, err := size(code.Size, m); err != nil {
		return err
	}
	cfg := qrterminal.Config{Level: level, QuietZone: QuietZone}
	switch m {
	case HalfBlocks:
		// qrterminal's half-block layout draws light modules as ink.
		cfg.HalfBlocks = true
		cfg.WhiteChar, cfg.BlackChar = "█", " "
		cfg.WhiteBlackChar, cfg.BlackWhiteChar = "▀", "▄"
	case FullBlocks:
		cfg.WhiteChar, cfg.BlackChar = "██", "  "
	case ASCII:
		// One byte per module here; doubled and coloured below.
		cfg.WhiteChar, cfg.BlackChar = "#", " "
	}
	var grid bytes.Buffer
	cfg.Writer = &grid
	qrterminal.GenerateWithConfig(content, cfg)

	var out bytes.Buffer
	out.Grow(grid.Len()*2 + 16*code.Size)
	for line := range strings.Lines(grid.String()) {
		line = strings.TrimSuffix(line, "\n")
		out.WriteString(sgrLine)
		if m == ASCII {
			writeASCII(&out, line)
		} else {
			out.WriteString(line)
		}
		out.WriteString(sgrReset)
		out.WriteByte('\n')
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("qrterm: write QR code: %w", err)
	}
	return nil
}

// writeASCII writes a line of '#' (light) and ' ' (dark) modules two columns
// each, switching the background at each change. Light cells are "##" in
// colour 7 on colour 7, a solid light block; the '#' only shows the shape
// where colours are off or the text is copied.
func writeASCII(out *bytes.Buffer, line string) {
	var cur byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != cur {
			if c == '#' {
				out.WriteString(sgrLight)
			} else {
				out.WriteString(sgrDark)
			}
			cur = c
		}
		out.WriteByte(c)
		out.WriteByte(c)
	}
}

// URIForm is which otpauth URI of a key [WriteKey] drew.
type URIForm int

const (
	// FullURI is [totp.Key.URI]: the issuer as label prefix and parameter,
	// and every parameter.
	FullURI URIForm = iota
	// ShortURI is [totp.Key.ShortURI]: no issuer parameter, and algorithm,
	// digits and period only where they differ from the defaults. Apps read
	// the same key and issuer.
	ShortURI
	// ShortURINoIssuer is the ShortURI of the key without its issuer: the
	// same secret and parameters, but the app shows only the account name.
	ShortURINoIssuer
)

func (f URIForm) String() string {
	switch f {
	case FullURI:
		return "full"
	case ShortURI:
		return "short"
	case ShortURINoIssuer:
		return "short without issuer"
	}
	return fmt.Sprintf("URIForm(%d)", int(f))
}

// URI returns the otpauth URI of k in form f. It holds the secret.
func (f URIForm) URI(k totp.Key) string {
	switch f {
	case ShortURI:
		return k.ShortURI()
	case ShortURINoIssuer:
		k.Issuer = ""
		return k.ShortURI()
	}
	return k.URI()
}

// Note is a sentence for the user under a QR code of form f that says what
// the code leaves out, or "" for FullURI. It is at most ASCIIColumns-2
// bytes, so that it fits 80 columns in parentheses.
func (f URIForm) Note() string {
	switch f {
	case ShortURI:
		return "The QR code holds a shortened otpauth URI: default parameters are implied."
	case ShortURINoIssuer:
		return "The QR code holds a shortened URI without the issuer: apps show the account."
	}
	return ""
}

// WriteKey draws k as a QR code in mode m, as [Write] does, and returns the
// form of its otpauth URI that it drew: FullURI if that fits the mode, else
// ShortURI, else ShortURINoIssuer (only if k has an issuer). Only ASCII mode
// limits the width, so the short forms are drawn in ASCII mode only, for a
// key whose full URI is over 78 bytes. If no form fits, nothing is written
// and the error is that of the shortest form, ErrTooWide with the columns it
// needs. Other errors of Write are returned at once. WriteKey does not
// validate k; call [totp.Key.Validate] first. No error contains the key.
func WriteKey(w io.Writer, k totp.Key, m Mode) (URIForm, error) {
	forms := []URIForm{FullURI, ShortURI, ShortURINoIssuer}
	if k.Issuer == "" {
		forms = forms[:2]
	}
	var err error
	for _, f := range forms {
		err = Write(w, f.URI(k), m)
		if !errors.Is(err, ErrTooWide) && !errors.Is(err, ErrTooLong) {
			return f, err
		}
	}
	return 0, err
}

// Plain removes the colour escapes Write sets on each line, and the last newline: for text that
// reaches terminals through channels that show escapes as text (PAM messages through ssh
// clients). The light modules stay drawn as ink, which is right on the dark background of most
// terminals.
func Plain(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] == ';' || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			if j < len(s) && s[j] == 'm' {
				i = j
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return strings.TrimRight(b.String(), "\n")
}
