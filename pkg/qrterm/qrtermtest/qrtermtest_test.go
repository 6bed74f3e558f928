package qrtermtest_test

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
)

const uri = "otpauth://totp/HPC:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=HPC"

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestDecode finds and scans a QR code among other output, in every mode, with and without
// its colour escapes (PAM text drops them).
func TestDecode(t *testing.T) {
	t.Parallel()
	qrtermtest.SkipWithoutZbar(t)
	tests := []struct {
		name  string
		m     qrterm.Mode
		strip bool
	}{
		{"half", qrterm.HalfBlocks, false},
		{"half without colours", qrterm.HalfBlocks, true},
		{"full", qrterm.FullBlocks, false},
		{"full without colours", qrterm.FullBlocks, true},
		{"ascii", qrterm.ASCII, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := qrterm.Write(&buf, uri, tt.m); err != nil {
				t.Fatalf("Write(%s) = %v", tt.m, err)
			}
			code := buf.String()
			if tt.strip {
				code = sgr.ReplaceAllString(code, "")
			}
			out := "Scan this QR code:\n" + code + "Key (base32): JBSW Y3DP\n#\n\x1b[1m##\x1b[0m done\n"
			if n, want := len(qrtermtest.Lines(out)), bytes.Count(buf.Bytes(), []byte("\n")); n != want {
				t.Errorf("Lines(%s output) = %d lines, want %d", tt.name, n, want)
			}
			if got, err := qrtermtest.Decode(t, out); err != nil || got != uri {
				t.Errorf("Decode(%s output) = %q, %v, want %q", tt.name, got, err, uri)
			}
		})
	}
}

func TestLinesNone(t *testing.T) {
	t.Parallel()
	for _, out := range []string{"", "\n\n", "plain text\n#\n", "### heading\n"} {
		if got := qrtermtest.Lines(out); len(got) != 0 {
			t.Errorf("Lines(%q) = %q, want none", out, got)
		}
	}
}
