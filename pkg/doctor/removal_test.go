package doctor

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const removalFixtures = "testdata/removal"

func TestCheckRemoval(t *testing.T) {
	t.Parallel()
	profile := filepath.Join(removalFixtures, "pam-configs", "pam-totp")
	noProfile := filepath.Join(removalFixtures, "pam-configs", "absent")
	type line struct {
		where   string
		managed bool
	}
	tests := []struct {
		name    string
		o       RemovalOptions
		want    []line
		safe    bool
		outputs []string // substrings of Write's output
	}{
		{"no pam_totp line", RemovalOptions{PAMDir: "clean", Profile: profile}, nil, true,
			[]string{"OK: no file in testdata/removal/clean names pam_totp.so by hand; the package may be removed.\n"}},
		{"no PAM directory", RemovalOptions{PAMDir: "absent", Profile: profile}, nil, true, []string{"OK: "}},
		{"in pam-auth-update's block", RemovalOptions{PAMDir: "managed", Profile: profile},
			[]line{{"common-auth:10", true}}, true, []string{"OK: ", "(1 in pam-auth-update's block"}},
		{"block without the profile", RemovalOptions{PAMDir: "managed", Profile: noProfile},
			[]line{{"common-auth:10", false}}, false,
			[]string{"testdata/removal/managed/common-auth:10: auth required pam_totp.so\n", "pam-auth-update --disable pam-totp"}},
		{"strict", RemovalOptions{PAMDir: "managed", Profile: profile, Strict: true},
			[]line{{"common-auth:10", false}}, false, []string{"managed/common-auth:10: "}},
		{"by hand", RemovalOptions{PAMDir: "byhand", Profile: profile},
			[]line{{"common-auth:7", true}, {"common-auth:9", false}, {"sshd:2", false}, {"sudo:2", false}, {"sudo:5", false}}, false,
			[]string{
				"testdata/removal/byhand/common-auth:9: auth required pam_totp.so nullok_never\n" +
					"testdata/removal/byhand/sshd:2: auth required /lib/x86_64-linux-gnu/security/pam_totp.so\n" +
					"testdata/removal/byhand/sudo:2: -auth [success=ok default=die] pam_totp.so config=/etc/pam-totp/sudo.conf\n" +
					"testdata/removal/byhand/sudo:5: Session optional pam_totp.so\n" +
					"These lines name pam_totp.so by hand",
				"remove these lines or comment them out", "pam-auth-update --disable pam-totp", "authselect",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.o
			o.PAMDir = filepath.Join(removalFixtures, o.PAMDir)
			r, err := CheckRemoval(o)
			if err != nil {
				t.Fatalf("CheckRemoval(%+v) = %v", o, err)
			}
			var got []line
			for _, l := range r.Lines {
				rel, _ := filepath.Rel(o.PAMDir, l.File)
				got = append(got, line{rel + ":" + strconv.Itoa(l.Line), l.Managed})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("CheckRemoval(%+v) lines = %v, want %v", o, got, tc.want)
			}
			if r.Safe() != tc.safe {
				t.Errorf("Safe() = %v, want %v", r.Safe(), tc.safe)
			}
			var out bytes.Buffer
			if err := r.Write(&out); err != nil {
				t.Fatal(err)
			}
			if tc.safe && strings.Count(out.String(), "\n") != 1 {
				t.Errorf("Write() = %q, want one line", out.String())
			}
			for _, s := range tc.outputs {
				if !strings.Contains(out.String(), s) {
					t.Errorf("Write() = %q, want it to contain %q", out.String(), s)
				}
			}
		})
	}
}
