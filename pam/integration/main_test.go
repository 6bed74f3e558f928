//go:build linux

package integration

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
	skipReason string // set when the tests cannot run here; every test skips with it
	moduleSO   string // private copy of build/pam_totp.so
	helperBin  string // private copy of build/pam-totp-helper
	testBin    string // this test binary, for re-executing it
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		skipReason = "pam/integration needs root: it adds local users and groups, writes /etc/pam.d and " +
			"/etc/sudoers.d, and runs sshd and sudo (run `make test` as root, as CI does)"
		fmt.Fprintf(os.Stderr, "pam/integration: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	if !pam.CheckPamHasStartConfdir() {
		skipReason = "libpam has no pam_start_confdir (Linux-PAM 1.4 or later needed)"
		fmt.Fprintf(os.Stderr, "pam/integration: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "Makefile"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pam/integration: cannot find the repository root: %v\n", err)
		return 1
	}
	// The Makefile is the interface: the same build CI runs before the tests.
	mk := exec.Command("make", "-C", root, "build")
	if out, err := mk.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "pam/integration: make failed: %v\n%s", err, out)
		return 1
	}
	// Private copies: another package's `make` running at the same time must not swap the files
	// under a running login. The directory is root 0755, as the module wants it.
	bin, err := os.MkdirTemp("", "pamtotp-it-bin-")
	if err == nil {
		err = os.Chmod(bin, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pam/integration: %v\n", err)
		return 1
	}
	defer os.RemoveAll(bin)
	moduleSO = filepath.Join(bin, "pam_totp.so")
	helperBin = filepath.Join(bin, "pam-totp-helper")
	for src, dst := range map[string]string{
		filepath.Join(root, "build", "pam_totp.so"):     moduleSO,
		filepath.Join(root, "build", "pam-totp-helper"): helperBin,
	} {
		if err := copyFile(src, dst, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "pam/integration: %v\n", err)
			return 1
		}
	}
	if testBin, err = os.Executable(); err != nil {
		fmt.Fprintf(os.Stderr, "pam/integration: %v\n", err)
		return 1
	}
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// needTools skips when a program a test drives is not installed (contrib/scripts/deps.sh
// installs them all).
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (contrib/scripts/deps.sh installs it): %v", n, err)
		}
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

// randName returns n random lower-case letters: unique names without digits, so that no name
// can contain a code in a log line.
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
