package doctor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
