//go:build linux

package syncsuite

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/msteinert/pam/v2"
)

var (
	skipReason string                // set when the tests cannot run here; every test skips with it
	bin        = map[string]string{} // name in build/ -> private copy
)

// binaries are the build outputs the suite runs, all from `make build`.
var binaries = []string{"pam_totp.so", "pam-totp-helper", "totp-admin", "totp-registry", "totp-syncd"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	skip := func(reason string) int {
		skipReason = reason
		fmt.Fprintf(os.Stderr, "pam/syncsuite: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return skip("pam/syncsuite needs root: it adds local users, and pam_totp.so wants a root-owned " +
			"helper and config (run `make test` as root, as CI does)")
	}
	if !pam.CheckPamHasStartConfdir() {
		return skip("libpam has no pam_start_confdir (Linux-PAM 1.4 or later needed)")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "Makefile"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pam/syncsuite: cannot find the repository root: %v\n", err)
		return 1
	}
	mk := exec.Command("make", "-C", root, "build")
	if out, err := mk.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "pam/syncsuite: make build failed: %v\n%s", err, out)
		return 1
	}
	// Private copies in a root 0755 directory: another package's `make` must not swap a binary
	// under a running process, and the module wants a root-owned helper.
	dir, err := os.MkdirTemp("", "pamtotp-sync-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pam/syncsuite: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, name := range binaries {
		src := filepath.Join(root, "build", name)
		if _, err := os.Stat(src); err != nil {
			return skip(fmt.Sprintf("`make build` did not produce %s: %v", src, err))
		}
		dst := filepath.Join(dir, name)
		if err := copyFile(src, dst, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "pam/syncsuite: %v\n", err)
			return 1
		}
		bin[name] = dst
	}
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// randName returns n random lower-case letters: names without digits, so no name can contain a
// code in a log line.
func randName(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}
