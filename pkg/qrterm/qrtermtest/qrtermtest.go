// Package qrtermtest decodes QR codes as a terminal shows them, for tests only: it draws
// terminal text (package qrterm's half blocks ▀ ▄ █, full blocks, or ASCII '#' with SGR colour
// escapes) into an image as a terminal with a given theme would, and reads the image with
// zbarimg (Debian: zbar-tools). Tests that decode call SkipWithoutZbar first.
package qrtermtest

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// A Theme is a terminal's default colours: the grey levels of the pixels drawn.
type Theme struct {
	Name   string
	FG, BG uint8
}

// The two kinds of terminal a QR code must scan on.
var (
	Dark  = Theme{"dark", 0xd0, 0x10}
	Light = Theme{"light", 0x10, 0xf8}
)

// ANSI colour 7 (white, 37/47) and 0 (black, 30/40) as xterm draws them.
const ansiWhite, ansiBlack = 0xe5, 0x00

// Each terminal cell is drawn as cellW x cellH pixels, the usual 1:2 shape.
const cellW, cellH = 8, 16

// SkipWithoutZbar skips the test when zbarimg is not installed.
func SkipWithoutZbar(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("zbarimg"); err != nil {
		t.Skip("zbarimg not installed (Debian: apt-get install zbar-tools); skipping the decoding of rendered QR codes")
	}
}

// Decode finds the QR code in a program's output (the first run of lines that Lines picks),
// draws it as a terminal with a dark background that honours colour escapes would, and
// decodes it with zbarimg. The test fails when the output has no QR code lines.
func Decode(t testing.TB, text string) (string, error) {
	t.Helper()
	lines := Lines(text)
	if len(lines) == 0 {
		t.Fatalf("no QR code lines in the output:\n%s", text)
	}
	return Zbar(t, Rasterize(t, strings.Join(lines, "\n"), Dark, true))
}

// Lines returns the lines of the first QR code in text, as they are, colour escapes and all:
// the first run of lines that are, without their escapes, block characters and spaces, or, on
// lines with escapes, '#' and spaces (qrterm's ASCII mode).
func Lines(text string) []string {
	var qr []string
	for _, l := range strings.Split(text, "\n") {
		plain := stripSGR(l)
		blocks := plain != "" && strings.Trim(plain, " ▀▄█") == ""
		ascii := plain != "" && plain != l && strings.Trim(plain, " #") == ""
		if blocks || ascii {
			qr = append(qr, l)
		} else if len(qr) > 0 {
			break
		}
	}
	return qr
}

// stripSGR removes escapes up to their final 'm'.
func stripSGR(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			if end := strings.IndexByte(s[i:], 'm'); end >= 0 {
				i += end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Rasterize draws terminal output as a terminal with theme th would, into a grey image with a
// margin of terminal background around it. With sgr false the terminal ignores colour escapes
// (a monochrome terminal). The test fails on characters and escapes qrterm does not write.
func Rasterize(t testing.TB, text string, th Theme, sgr bool) *image.Gray {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	const margin = 3 // cells
	width := 0
	for _, l := range lines {
		width = max(width, VisibleWidth(l))
	}
	img := image.NewGray(image.Rect(0, 0, (width+2*margin)*cellW, (len(lines)+2*margin)*cellH))
	for i := range img.Pix {
		img.Pix[i] = th.BG
	}
	for y, line := range lines {
		fg, bg := th.FG, th.BG
		x := 0
		for i := 0; i < len(line); {
			if line[i] == 0x1b {
				end := strings.IndexByte(line[i:], 'm')
				if !strings.HasPrefix(line[i:], "\x1b[") || end < 0 {
					t.Fatalf("line %d: unexpected escape %q", y, line[i:])
				}
				if sgr {
					for _, p := range strings.Split(line[i+2:i+end], ";") {
						switch p {
						case "0", "":
							fg, bg = th.FG, th.BG
						case "30":
							fg = ansiBlack
						case "37":
							fg = ansiWhite
						case "40":
							bg = ansiBlack
						case "47":
							bg = ansiWhite
						default:
							t.Fatalf("line %d: unexpected SGR parameter %q", y, p)
						}
					}
				}
				i += end + 1
				continue
			}
			r, n := utf8.DecodeRuneInString(line[i:])
			i += n
			if !drawCell(img, (x+margin)*cellW, (y+margin)*cellH, r, fg, bg) {
				t.Fatalf("line %d: unexpected character %q", y, r)
			}
			x++
		}
	}
	return img
}

// drawCell draws r into the cell at x0, y0, or reports false for a character it cannot draw.
func drawCell(img *image.Gray, x0, y0 int, r rune, fg, bg uint8) bool {
	for dy := range cellH {
		for dx := range cellW {
			ink := false
			switch r {
			case '█':
				ink = true
			case '▀':
				ink = dy < cellH/2
			case '▄':
				ink = dy >= cellH/2
			case '#':
				// A hash sign: two vertical and two horizontal strokes.
				ink = (dx == 2 || dx == 5) && dy >= 3 && dy <= 12 || (dy == 6 || dy == 10) && dx >= 1 && dx <= 6
			case ' ':
			default:
				return false
			}
			c := bg
			if ink {
				c = fg
			}
			img.SetGray(x0+dx, y0+dy, color.Gray{Y: c})
		}
	}
	return true
}

// VisibleWidth counts the cells of a line: runes outside escapes, or -1 for an escape without
// its end.
func VisibleWidth(line string) int {
	plain := stripSGR(line)
	if strings.IndexByte(plain, 0x1b) >= 0 {
		return -1
	}
	return utf8.RuneCountInString(plain)
}

// Zbar decodes the QR code in img with zbarimg. The error says when zbarimg found none.
func Zbar(t testing.TB, img image.Image) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qr.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("zbarimg", "--raw", "-q", path).Output()
	if err != nil {
		return "", fmt.Errorf("zbarimg: %w", err)
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}
