package qrterm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
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

// TestWriteScans draws codes in every mode, rasterizes them as terminals
// with dark and light themes show them, and decodes them with zbarimg.
func TestWriteScans(t *testing.T) {
	t.Parallel()
	qrtermtest.SkipWithoutZbar(t)
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
				th  qrtermtest.Theme
				sgr bool
			}{
				{qrtermtest.Dark, true},
				{qrtermtest.Light, true},
				// Without colours the ink is the light modules: correct on a
				// dark background, inverted on a light one. In ASCII mode the
				// ink of '#' is too thin to scan without colours.
				{qrtermtest.Dark, false},
			} {
				if m == ASCII && !tc.sgr {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s/sgr=%v", m, name, tc.th.Name, tc.sgr), func(t *testing.T) {
					t.Parallel()
					img := qrtermtest.Rasterize(t, buf.String(), tc.th, tc.sgr)
					got, err := qrtermtest.Zbar(t, img)
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
				if w := qrtermtest.VisibleWidth(l); w != tt.cols {
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
				if w := qrtermtest.VisibleWidth(l); w > ASCIIColumns {
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

// Keys for WriteKey: a 160-bit secret and the names of a real enrollment.
var (
	demoSecret = []byte("pam-totp demo secret") // 20 bytes, base32 below
	demoB32    = "OBQW2LLUN52HAIDEMVWW6IDTMVRXEZLU"
	// account32 is a 32-character user name, too long for ASCII mode.
	account32 = "alice.longname-hpc-project-42xyz"
)

func demoKey(issuer, account string, p totp.Params) totp.Key {
	return totp.Key{Issuer: issuer, Account: account, Secret: demoSecret, Params: p}
}

// TestWriteKeyASCIIScans draws realistic keys with WriteKey in ASCII mode
// and checks that the code fits 80 columns, scans (zbarimg, dark and light
// themes) as exactly the short URI, and that the URI scanned gives the
// codes oathtool computes from the secret.
func TestWriteKeyASCIIScans(t *testing.T) {
	t.Parallel()
	qrtermtest.SkipWithoutZbar(t)
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not installed (Debian: apt-get install oathtool); skipping the comparison with OATH Toolkit")
	}
	if got := totp.EncodeSecret(demoSecret); got != demoB32 {
		t.Fatalf("EncodeSecret(demoSecret) = %q, want %q", got, demoB32)
	}
	const unix = 1700000000 // a fixed instant
	tests := []struct {
		name     string
		k        totp.Key
		wantForm URIForm
		want     string // the content the code must scan as
	}{
		{"pam-totp demo/alice", demoKey("pam-totp demo", "alice", totp.DefaultParams), ShortURI,
			"otpauth://totp/pam-totp%20demo:alice?secret=" + demoB32},
		{"HPC Centre/alice", demoKey("HPC Centre", "alice", totp.DefaultParams), ShortURI,
			"otpauth://totp/HPC%20Centre:alice?secret=" + demoB32},
		{"HPC/alice, 8 digits", demoKey("HPC", "alice", totp.Params{Algorithm: totp.SHA1, Digits: 8, Period: 30}), ShortURI,
			"otpauth://totp/HPC:alice?secret=" + demoB32 + "&digits=8"},
		{"HPC Centre/16-character account", demoKey("HPC Centre", "alice.smith.2024", totp.DefaultParams), ShortURINoIssuer,
			"otpauth://totp/alice.smith.2024?secret=" + demoB32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.k.Validate(); err != nil {
				t.Fatalf("Validate(%s) = %v", tt.name, err)
			}
			var buf bytes.Buffer
			form, err := WriteKey(&buf, tt.k, ASCII)
			if err != nil || form != tt.wantForm {
				t.Fatalf("WriteKey(%s, ASCII) = %v, %v, want %v", tt.name, form, err, tt.wantForm)
			}
			if got := form.URI(tt.k); got != tt.want {
				t.Fatalf("%v.URI(%s) = %q, want %q", form, tt.name, got, tt.want)
			}
			// (a) 80 columns.
			for i, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				if w := qrtermtest.VisibleWidth(l); w > ASCIIColumns {
					t.Errorf("WriteKey(%s, ASCII) line %d is %d columns, more than %d", tt.name, i, w, ASCIIColumns)
				}
			}
			// (b) it scans as exactly the short URI.
			var scanned string
			for _, th := range []qrtermtest.Theme{qrtermtest.Dark, qrtermtest.Light} {
				got, err := qrtermtest.Zbar(t, qrtermtest.Rasterize(t, buf.String(), th, true))
				if err != nil || got != tt.want {
					t.Fatalf("zbarimg(WriteKey(%s, ASCII)) on a %s theme = %q, %v, want %q", tt.name, th.Name, got, err, tt.want)
				}
				scanned = got
			}
			// (c) the scanned URI is the key: same secret, parameters and
			// account, and the codes of OATH Toolkit.
			k, err := totp.ParseURI(scanned)
			if err != nil {
				t.Fatalf("ParseURI(scanned) = %v", err)
			}
			wantIssuer := tt.k.Issuer
			if form == ShortURINoIssuer {
				wantIssuer = ""
			}
			if !bytes.Equal(k.Secret, demoSecret) || k.Params != tt.k.Params || k.Account != tt.k.Account || k.Issuer != wantIssuer {
				t.Fatalf("ParseURI(scanned) = issuer %q account %q params %+v secret %x, want %q %q %+v %x",
					k.Issuer, k.Account, k.Params, k.Secret, wantIssuer, tt.k.Account, tt.k.Params, demoSecret)
			}
			got := totp.Code(k.Secret, k.Params, totp.Step(time.Unix(unix, 0), k.Params.Period))
			cmd := exec.Command(oathtool, "--totp", "--base32", fmt.Sprintf("--digits=%d", tt.k.Params.Digits),
				fmt.Sprintf("--now=@%d", unix), "-")
			cmd.Stdin = strings.NewReader(demoB32 + "\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("oathtool: %v", err)
			}
			if want := strings.TrimSpace(string(out)); got != want || len(got) != tt.k.Params.Digits {
				t.Errorf("Code(scanned key, @%d) = %q, oathtool says %q", unix, got, want)
			}
		})
	}
}

// TestWriteKeyForms: which URI WriteKey draws per mode, and that it draws
// exactly what Write draws for that URI, or nothing.
func TestWriteKeyForms(t *testing.T) {
	t.Parallel()
	typical := demoKey("HPC Centre", "alice", totp.DefaultParams)
	longIssuer := demoKey("Example University HPC Centre", "alice", totp.DefaultParams)
	long := demoKey("HPC Centre", account32, totp.DefaultParams)
	noIssuer := demoKey("", "alice", totp.DefaultParams)
	noIssuerLong := demoKey("", account32, totp.DefaultParams)
	params := demoKey("HPC", "alice", totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60})
	tests := []struct {
		name string
		k    totp.Key
		m    Mode
		want URIForm
		err  error
	}{
		{"typical half", typical, HalfBlocks, FullURI, nil},
		{"typical full", typical, FullBlocks, FullURI, nil},
		{"typical ascii", typical, ASCII, ShortURI, nil},
		{"long issuer half", longIssuer, HalfBlocks, FullURI, nil},
		{"long issuer ascii", longIssuer, ASCII, ShortURINoIssuer, nil},
		{"no issuer ascii", noIssuer, ASCII, ShortURI, nil},
		{"32-character account half", long, HalfBlocks, FullURI, nil},
		{"32-character account full", long, FullBlocks, FullURI, nil},
		{"32-character account ascii", long, ASCII, 0, ErrTooWide},
		{"no issuer, 32-character account ascii", noIssuerLong, ASCII, 0, ErrTooWide},
		// Non-default parameters stay in the short URI, which then does not fit.
		{"SHA256, 8 digits, 60 s ascii", params, ASCII, 0, ErrTooWide},
		{"SHA256, 8 digits, 60 s half", params, HalfBlocks, FullURI, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.k.Validate(); err != nil {
				t.Fatalf("Validate(%s) = %v", tt.name, err)
			}
			var buf bytes.Buffer
			got, err := WriteKey(&buf, tt.k, tt.m)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("WriteKey(%s, %s) = %v, %v, want %v", tt.name, tt.m, got, err, tt.err)
				}
				if buf.Len() != 0 {
					t.Errorf("WriteKey(%s, %s) wrote %d bytes with an error", tt.name, tt.m, buf.Len())
				}
				if strings.Contains(err.Error(), demoB32) || strings.Contains(err.Error(), "otpauth") {
					t.Errorf("WriteKey error %q repeats the content", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("WriteKey(%s, %s) = %v, %v, want %v", tt.name, tt.m, got, err, tt.want)
			}
			var want bytes.Buffer
			if err := Write(&want, tt.want.URI(tt.k), tt.m); err != nil {
				t.Fatalf("Write(%v URI, %s) = %v", tt.want, tt.m, err)
			}
			if !bytes.Equal(buf.Bytes(), want.Bytes()) {
				t.Errorf("WriteKey(%s, %s) output differs from Write of the %v URI", tt.name, tt.m, tt.want)
			}
		})
	}
	t.Run("writer error", func(t *testing.T) {
		t.Parallel()
		werr := errors.New("disk full")
		if _, err := WriteKey(failWriter{werr}, typical, ASCII); !errors.Is(err, werr) {
			t.Errorf("WriteKey(failing writer) = %v, want %v", err, werr)
		}
	})
}

func TestURIForm(t *testing.T) {
	t.Parallel()
	k := demoKey("HPC Centre", "alice", totp.DefaultParams)
	tests := []struct {
		f        URIForm
		uri      string
		hasNote  bool
		noteWant string // a word the note must have
	}{
		{FullURI, k.URI(), false, ""},
		{ShortURI, "otpauth://totp/HPC%20Centre:alice?secret=" + demoB32, true, "default parameters"},
		{ShortURINoIssuer, "otpauth://totp/alice?secret=" + demoB32, true, "without the issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.f.String(), func(t *testing.T) {
			t.Parallel()
			if got := tt.f.URI(k); got != tt.uri {
				t.Errorf("%v.URI(k) = %q, want %q", tt.f, got, tt.uri)
			}
			note := tt.f.Note()
			if (note != "") != tt.hasNote || !strings.Contains(note, tt.noteWant) {
				t.Errorf("%v.Note() = %q, want a note: %v, with %q", tt.f, note, tt.hasNote, tt.noteWant)
			}
			if strings.Contains(note, demoB32) || strings.Contains(note, "alice") {
				t.Errorf("%v.Note() = %q has the key", tt.f, note)
			}
			if len(note)+2 > ASCIIColumns {
				t.Errorf("%v.Note() is %d bytes: too long for 80 columns in parentheses", tt.f, len(note))
			}
		})
	}
}
