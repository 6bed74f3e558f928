package tokenimport

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const (
	secretA = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" // 20 bytes
	secretB = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // "12345678901234567890"
)

// gaSample is a google-authenticator file with every kind of line (also used by admin's tests).
var gaSample = func() string {
	b, err := os.ReadFile(filepath.Join("testdata", "google_authenticator"))
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestParseCSV(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantRecs []string // "line:user:name"
		wantBad  []int
	}{
		{"two lines", "alice," + secretA + ",phone\nbob," + secretB + "\n",
			[]string{"1:alice:phone", "2:bob:"}, nil},
		{"comments, blanks, CRLF, spaces", "# exported 2024\r\n\r\n alice , " + secretA + " , phone \r\n   \r\n#bob\r\nbob,jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp\r\n",
			[]string{"3:alice:phone", "6:bob:"}, nil},
		{"header", "user,secret,name\nalice," + secretA + "\n", []string{"2:alice:"}, nil},
		{"name with commas", "alice," + secretA + ",phone, old\n", []string{"1:alice:phone, old"}, nil},
		{"bad lines", "alice\n,\nbob,!!!!\ncarol," + secretA + ",\x1b[31m\ndave,JBSWY3DP\nerin," + secretA + "\n" +
			"frank,JBSWY3DPEHPK3PX1\n" + "gr ace," + secretA + "\n",
			[]string{"6:erin:"}, []int{1, 2, 3, 4, 5, 7, 8}},
		{"empty file", "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recs, bad, err := ParseCSV(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, fmt.Sprintf("%d:%s:%s", r.Line, r.User, r.Name))
			}
			if !slices.Equal(got, tc.wantRecs) {
				t.Errorf("records = %q, want %q", got, tc.wantRecs)
			}
			var gotBad []int
			for _, b := range bad {
				gotBad = append(gotBad, b.Line)
				for _, s := range []string{secretA, "JBSWY3DP", "!!!!", "\x1b"} {
					if strings.Contains(b.Error(), s) {
						t.Errorf("error %q repeats input %q", b.Error(), s)
					}
				}
			}
			if !slices.Equal(gotBad, tc.wantBad) {
				t.Errorf("bad lines = %v (%v), want %v", gotBad, bad, tc.wantBad)
			}
		})
	}
	t.Run("error wording", func(t *testing.T) {
		_, bad, _ := ParseCSV(strings.NewReader("x\nalice," + secretA + "\nbob,JBSWY3DPEHPK3PX1\n"))
		if len(bad) != 2 || bad[1].Error() != "line 3: secret is not valid base32" {
			t.Fatalf("bad = %v", bad)
		}
	})
	t.Run("long line", func(t *testing.T) {
		_, _, err := ParseCSV(strings.NewReader("alice," + strings.Repeat("A", 5000) + "\n"))
		if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), "AAAA") {
			t.Fatalf("ParseCSV(long line) = %v", err)
		}
	})
}

func TestParseGA(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantErr     string
		wantPeriod  int
		wantScratch int
		wantIgnored []string
	}{
		{"sample", gaSample, "", 30, 5, []string{"RATE_LIMIT", "WINDOW_SIZE", "DISALLOW_REUSE"}},
		{"crlf and step size", strings.ReplaceAll("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" STEP_SIZE 60\n11111111\n", "\n", "\r\n"), "", 60, 1, nil},
		{"no scratch codes", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n", "", 30, 0, nil},
		{"hotp", "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n12345678\n", "HOTP", 0, 0, nil},
		{"hotp and totp", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" HOTP_COUNTER 4\n", "HOTP", 0, 0, nil},
		{"no totp_auth", "JBSWY3DPEHPK3PXP\n12345678\n", "no TOTP_AUTH", 0, 0, nil},
		{"otp disabled", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" OTP_DISABLED\n", "OTP_DISABLED", 0, 0, nil},
		{"bad secret", "JBSWY3DPEHPK3PX1\n\" TOTP_AUTH\n", "line 1: secret is not valid base32", 0, 0, nil},
		{"short secret", "JBSWY3DP\n\" TOTP_AUTH\n", "line 1: secret has an unsupported length", 0, 0, nil},
		{"empty", "", "line 1: no secret", 0, 0, nil},
		{"bad step", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" STEP_SIZE 5\n", "line 3: STEP_SIZE", 0, 0, nil},
		{"short scratch", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n1234567\n", "line 3: neither", 0, 0, nil},
		{"garbage option", "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" hello\n", "line 3: not an option", 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseGA([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseGA = %v, want an error with %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "JBSWY3DP") || strings.Contains(err.Error(), "1234567") {
					t.Fatalf("error %q repeats the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGA: %v", err)
			}
			if f.Period != tc.wantPeriod || len(f.Scratch) != tc.wantScratch || !slices.Equal(f.Ignored, tc.wantIgnored) {
				t.Fatalf("ParseGA = period %d, %d scratch, ignored %v; want %d, %d, %v",
					f.Period, len(f.Scratch), f.Ignored, tc.wantPeriod, tc.wantScratch, tc.wantIgnored)
			}
		})
	}
}

func TestOpenInput(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "ga")
	if err := os.WriteFile(regular, []byte(gaSample), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	fifoPath := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifoPath, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"regular", regular, ""},
		{"symlink", link, "symlink"},
		{"fifo", fifoPath, "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := ReadGAFile(tc.path)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ReadGAFile hangs")
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadGAFile(%s) = %v", tc.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ReadGAFile(%s) = %v, want %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("alice," + secretA + ",phone\r\n# c\n\nbob,x\n"))
	f.Add([]byte("user,secret\n,,,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, bad, err := ParseCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range recs {
			if token.ValidUser(r.User) != nil || len(r.Secret) < totp.MinSecretLen || token.Clean(r.Name) != r.Name {
				t.Fatalf("invalid record accepted: %+v", r)
			}
		}
		for _, b := range bad {
			if b.Line < 1 {
				t.Fatalf("line number %d", b.Line)
			}
		}
	})
}

func FuzzParseGA(f *testing.F) {
	f.Add([]byte(gaSample))
	f.Add([]byte("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGA(data)
		if err != nil {
			first, _, _ := strings.Cut(string(data), "\n")
			if len(first) >= 16 && strings.Contains(err.Error(), first) {
				t.Fatalf("error repeats the secret line: %v", err)
			}
			return
		}
		if len(g.Secret) < totp.MinSecretLen || g.Period < totp.MinPeriod {
			t.Fatalf("ParseGA accepted %+v", g)
		}
		for _, c := range g.Scratch {
			if _, ok := backupcode.Normalize(c); !ok {
				t.Fatalf("scratch code %q does not normalise", c)
			}
		}
	})
}
