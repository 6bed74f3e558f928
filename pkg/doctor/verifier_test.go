package doctor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/config"
)

// TestCheckVerifier: doctor says which way logins take.
func TestCheckVerifier(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the socket must be root's")
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "verify.sock")
	ln, err := net.Listen("unix", good)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(good, 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.sock")
	ln2, err := net.Listen("unix", loose)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		socket string
		want   Status
		says   string
	}{
		{"none", OK, "logins exec the helper"},
		{good, OK, "logins go through the resident verifier"},
		{filepath.Join(dir, "absent.sock"), Warn, "every login starts the helper"},
		{loose, Fail, "will not use it"},
	} {
		r := &Report{}
		checkVerifier(r, tt.socket)
		if len(r.Findings) != 1 || r.Findings[0].Status != tt.want || !strings.Contains(r.Findings[0].Msg, tt.says) {
			t.Errorf("checkVerifier(%s) = %+v, want %v saying %q", tt.socket, r.Findings, tt.want, tt.says)
		}
	}
}

// TestCheckClaims: on a node with a registry, doctor says how claims work, and flags a node
// whose logins cannot claim (no resident verifier): a warning, or a failure under "deny".
func TestCheckClaims(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the store directory must be root's")
	}
	conf := func(extra string) *config.Config {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		c, _, err := config.Parse([]byte("[store]\ndir = \"" + dir + "\"\n[sync]\nregistry = \"https://r.example:8443\"\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		name, extra, socket string
		want                Status
		says                string
	}{
		{"resident verifier", "", "/run/pam-totp/verify.sock", OK, "claimed at the registry first"},
		{"module socket=none", "", "none", Warn, "cannot claim"},
		{"daemon verify_socket none, deny", "verify_socket = \"none\"\noffline_claims = \"deny\"\n", "/run/pam-totp/verify.sock", Fail, "every code is refused"},
	} {
		r := &Report{}
		checkClaims(r, conf(tt.extra), tt.socket)
		rank := map[Status]int{OK: 0, Warn: 1, Fail: 2}
		worst, said := OK, ""
		for _, f := range r.Findings {
			if rank[f.Status] > rank[worst] {
				worst = f.Status
			}
			said += f.Msg + "\n"
		}
		if worst != tt.want || !strings.Contains(said, tt.says) {
			t.Errorf("%s: checkClaims = %+v, want %v saying %q", tt.name, r.Findings, tt.want, tt.says)
		}
	}
	r := &Report{}
	checkClaims(r, &config.Config{}, "none")
	if len(r.Findings) != 0 {
		t.Errorf("standalone: checkClaims = %+v, want nothing", r.Findings)
	}
}
