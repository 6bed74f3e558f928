package qrterm

import (
	"bytes"
	"errors"
	"flag"
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

	"github.com/pam-totp/pam-totp/pkg/totp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Contents of the sizes that matter.
var (
	// shortURI fits ASCII mode: the longest otpauth URI that still does is
	// 78 bytes (QR version 4 at level L).
	shortURI = "otpauth://totp/HPC:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=HPC"
	// typicalURI is what enrollment shows: 160-bit secret, all parameters.
	typicalURI = totp.Key{Issuer: "Example HPC", Account: "alice", Secret: []byte("12345678901234567890"),
		Params: totp.DefaultParams}.URI()
	// longURI is about 200 bytes: long names, a 256-bit SHA512 secret.
	longURI = totp.Key{Issuer: "Example University HPC Centre", Account: "alice.longname@cluster.example.org",
		Secret: []byte("12345678901234567890123456789012"), Params: totp.Params{Algorithm: totp.SHA512, Digits: 8, Period: 60}}.URI()
	// ascii78 is the most that fits in 80 columns in ASCII mode.
	ascii78 = pad("otpauth://totp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=HPC&x=", 78)
)

func pad(s string, n int) string { return s + strings.Repeat("y", n-len(s)) }

// A theme is a terminal's default colours; grey levels of the pixels drawn.
type theme struct {
	name   string
	fg, bg uint8
}

var (
	darkTheme  = theme{"dark", 0xd0, 0x10}
	lightTheme = theme{"light", 0x10, 0xf8}
)

// ANSI colour 7 (white, 37/47) and 0 (black, 30/40) as xterm draws them.
const ansiWhite, ansiBlack = 0xe5, 0x00

// Each terminal cell is drawn as cellW x cellH pixels, the usual 1:2 shape.
const cellW, cellH = 8, 16

// rasterize draws terminal output as a terminal with theme th would, into a
// grey image with a margin of terminal background around it. With sgr
// false the terminal ignores colour escapes (a monochrome terminal).
func rasterize(t *testing.T, out string, th theme, sgr bool) *image.Gray {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	const margin = 3 // cells
	width := 0
	for _, l := range lines {
		width = max(width, visibleWidth(l))
	}
	img := image.NewGray(image.Rect(0, 0, (width+2*margin)*cellW, (len(lines)+2*margin)*cellH))
	for i := range img.Pix {
		img.Pix[i] = th.bg
	}
	for y, line := range lines {
		fg, bg := th.fg, th.bg
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
							fg, bg = th.fg, th.bg
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
			drawCell(img, (x+margin)*cellW, (y+margin)*cellH, r, fg, bg)
			x++
		}
	}
	return img
}

func drawCell(img *image.Gray, x0, y0 int, r rune, fg, bg uint8) {
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
				panic(fmt.Sprintf("unexpected character %q", r))
			}
			c := bg
			if ink {
				c = fg
			}
			img.SetGray(x0+dx, y0+dy, color.Gray{Y: c})
		}
	}
}

// visibleWidth counts the cells of a line: runes outside escapes.
func visibleWidth(line string) int {
	n := 0
	for i := 0; i < len(line); {
		if line[i] == 0x1b {
			end := strings.IndexByte(line[i:], 'm')
			if end < 0 {
				return -1
			}
			i += end + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(line[i:])
		i += size
		n++
	}
	return n
}

// zbar decodes the QR code in img with zbarimg (Debian: zbar-tools).
func zbar(t *testing.T, img image.Image) (string, error) {
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
	return strings.TrimSuffix(string(out), "\n"), err
}

// TestWriteScans draws codes in every mode, rasterizes them as terminals
// with dark and light themes show them, and decodes them with zbarimg.
func TestWriteScans(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("zbarimg"); err != nil {
		t.Skip("zbarimg not installed (Debian: apt-get install zbar-tools); skipping the decoding of rendered QR codes")
	}
	contents := map[string]string{"short": shortURI, "typical": typicalURI, "long": longURI, "ascii78": ascii78}
	for _, m := range []Mode{HalfBlocks, FullBlocks, ASCII} {
		for name, content := range contents {
			if m == ASCII && len(content) > 78 {
				continue
			}
			var buf bytes.Buffer
			if err := Write(&buf, content, m); err != nil {
				t.Fatalf("Write(%s, %s) = %v", name, m, err)
			}
			for _, tc := range []struct {
				th  theme
				sgr bool
			}{
				{darkTheme, true},
				{lightTheme, true},
				// Without colours the ink is the light modules: correct on a
				// dark background, inverted on a light one. In ASCII mode the
				// ink of '#' is too thin to scan without colours.
				{darkTheme, false},
			} {
				if m == ASCII && !tc.sgr {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s/sgr=%v", m, name, tc.th.name, tc.sgr), func(t *testing.T) {
					t.Parallel()
					img := rasterize(t, buf.String(), tc.th, tc.sgr)
					got, err := zbar(t, img)
					if err != nil || got != content {
						t.Errorf("zbarimg(Write(%q, %s)) = %q, %v, want the content", content, m, got, err)
					}
				})
			}
		}
	}
}

// TestWriteLayout checks the size of the output against Size and the
// terminal limits the package documents.
func TestWriteLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		content       string
		m             Mode
		cols, lines   int
		maxCols, maxL int // limits the output must keep, 0 for none
	}{
		// Version 4 (33 modules) + 2*2 quiet zone.
		{"short half", shortURI, HalfBlocks, 37, 19, 80, 24},
		{"short full", shortURI, FullBlocks, 74, 37, 0, 0},
		{"short ascii", shortURI, ASCII, 74, 37, 80, 0},
		{"ascii78", ascii78, ASCII, 74, 37, 80, 0},
		// Version 6 (41 modules): fits an 80x24 terminal with half blocks.
		{"typical half", typicalURI, HalfBlocks, 45, 23, 80, 24},
		{"typical full", typicalURI, FullBlocks, 90, 45, 0, 0},
		// Version 9 (53 modules): still 80 columns with half blocks.
		{"long half", longURI, HalfBlocks, 57, 29, 80, 0},
		{"long full", longURI, FullBlocks, 114, 57, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cols, lines, err := Size(tt.content, tt.m)
			if err != nil || cols != tt.cols || lines != tt.lines {
				t.Fatalf("Size(%d bytes, %s) = %d, %d, %v, want %d, %d", len(tt.content), tt.m, cols, lines, err, tt.cols, tt.lines)
			}
			var buf bytes.Buffer
			if err := Write(&buf, tt.content, tt.m); err != nil {
				t.Fatalf("Write(%d bytes, %s) = %v", len(tt.content), tt.m, err)
			}
			out := buf.String()
			if !strings.HasSuffix(out, sgrReset+"\n") {
				t.Errorf("Write(%s) output does not end with a colour reset and newline", tt.m)
			}
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(got) != tt.lines {
				t.Errorf("Write(%s) wrote %d lines, want %d", tt.m, len(got), tt.lines)
			}
			for i, l := range got {
				if w := visibleWidth(l); w != tt.cols {
					t.Errorf("Write(%s) line %d is %d columns, want %d", tt.m, i, w, tt.cols)
				}
				if !strings.HasPrefix(l, sgrLine) || !strings.HasSuffix(l, sgrReset) {
					t.Errorf("Write(%s) line %d does not set and reset its colours: %q", tt.m, i, l)
				}
				if tt.m == ASCII && strings.ContainsFunc(l, func(r rune) bool { return r >= 0x80 }) {
					t.Errorf("Write(ASCII) line %d has non-ASCII bytes", i)
				}
			}
			if tt.maxCols > 0 && tt.cols > tt.maxCols || tt.maxL > 0 && tt.lines > tt.maxL {
				t.Errorf("Write(%s) is %dx%d, more than %dx%d", tt.m, tt.cols, tt.lines, tt.maxCols, tt.maxL)
			}
		})
	}
}

// TestASCIIColumns checks the 80-column limit of ASCII mode at its edge and
// for the otpauth URIs enrollment shows, which do not fit.
func TestASCIIColumns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    error
	}{
		{"78 bytes fit", ascii78, nil},
		{"79 bytes do not", ascii78 + "y", ErrTooWide},
		{"typical otpauth URI", typicalURI, ErrTooWide},
		{"long otpauth URI", longURI, ErrTooWide},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := Write(&buf, tt.content, ASCII)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Write(%d bytes, ASCII) = %v, want %v", len(tt.content), err, tt.want)
			}
			if err != nil {
				if buf.Len() != 0 {
					t.Errorf("Write(%d bytes, ASCII) wrote %d bytes with an error", len(tt.content), buf.Len())
				}
				if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "otpauth") {
					t.Errorf("Write error %q repeats the content", err)
				}
				return
			}
			for i, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				if w := visibleWidth(l); w > ASCIIColumns {
					t.Errorf("Write(ASCII) line %d is %d columns, more than %d", i, w, ASCIIColumns)
				}
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		m       Mode
		want    error
	}{
		{"empty", "", HalfBlocks, nil},
		{"too long for any QR code", strings.Repeat("x", 3000), HalfBlocks, ErrTooLong},
		{"unknown mode", shortURI, Mode(7), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := Write(&buf, tt.content, tt.m)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Write(%s) = %v, want an error matching %v", tt.name, err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Write(%s) wrote %d bytes with an error", tt.name, buf.Len())
			}
			if tt.content != "" && strings.Contains(err.Error(), tt.content[:10]) {
				t.Errorf("Write error %q repeats the content", err)
			}
		})
	}
	t.Run("writer error", func(t *testing.T) {
		t.Parallel()
		werr := errors.New("disk full")
		if err := Write(failWriter{werr}, shortURI, HalfBlocks); !errors.Is(err, werr) {
			t.Errorf("Write(failing writer) = %v, want %v", err, werr)
		}
	})
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// TestWriteGolden pins the exact output; run with -update after an
// intended change and look at the files with cat in a terminal.
func TestWriteGolden(t *testing.T) {
	t.Parallel()
	for _, m := range []Mode{HalfBlocks, FullBlocks, ASCII} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := Write(&buf, shortURI, m); err != nil {
				t.Fatalf("Write(%s) = %v", m, err)
			}
			path := filepath.Join("testdata", m.String()+".golden")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("Write(%s) differs from %s; run go test -update if intended", m, path)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"half", HalfBlocks, true},
		{"full", FullBlocks, true},
		{"ascii", ASCII, true},
		{"ASCII", ASCII, true},
		{"Half", HalfBlocks, true},
		{"", 0, false},
		{"auto", 0, false},
		{"utf8", 0, false},
		{" half", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMode(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseMode(%q) = %v, %v, want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if err == nil && got.String() != strings.ToLower(tt.in) {
				t.Errorf("ParseMode(%q).String() = %q", tt.in, got.String())
			}
		})
	}
}

func TestDetectMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		term string
		utf8 bool
		want Mode
	}{
		{"xterm-256color", true, HalfBlocks},
		{"screen-256color", true, HalfBlocks},
		{"tmux-256color", true, HalfBlocks},
		{"xterm", true, HalfBlocks},
		{"linux", true, HalfBlocks},
		{"putty", true, HalfBlocks},
		{"xterm-256color", false, ASCII},
		{"linux", false, ASCII},
		{"putty", false, ASCII},
		{"", true, ASCII},
		{"dumb", true, ASCII},
		{"vt100", true, ASCII},
		{"vt220", true, ASCII},
		{"ansi", true, ASCII},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.term, tt.utf8), func(t *testing.T) {
			t.Parallel()
			if got := DetectMode(tt.term, tt.utf8); got != tt.want {
				t.Errorf("DetectMode(%q, %v) = %v, want %v", tt.term, tt.utf8, got, tt.want)
			}
		})
	}
}

func TestLocaleIsUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"unset", nil, false},
		{"LANG", map[string]string{"LANG": "en_US.UTF-8"}, true},
		{"utf8 spelling", map[string]string{"LANG": "de_DE.utf8"}, true},
		{"C.UTF-8", map[string]string{"LANG": "C.UTF-8"}, true},
		{"modifier", map[string]string{"LANG": "sr_RS.UTF-8@latin"}, true},
		{"C", map[string]string{"LANG": "C"}, false},
		{"POSIX", map[string]string{"LANG": "POSIX"}, false},
		{"Latin-1", map[string]string{"LANG": "de_DE.ISO-8859-1"}, false},
		{"no charset", map[string]string{"LANG": "en_US"}, false},
		{"LC_CTYPE wins over LANG", map[string]string{"LANG": "C", "LC_CTYPE": "en_US.UTF-8"}, true},
		{"LC_ALL wins", map[string]string{"LC_ALL": "C", "LC_CTYPE": "en_US.UTF-8", "LANG": "en_US.UTF-8"}, false},
		{"empty LC_ALL is unset", map[string]string{"LC_ALL": "", "LANG": "en_US.UTF-8"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := LocaleIsUTF8(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("LocaleIsUTF8(%v) = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}
