//go:build linux

package login

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

var (
	skipReason string // set when the tests cannot run here; every test skips with it
	moduleSO   string // private copy of build/pam_totp.so
	helperBin  string // private copy of build/testclock/pam-totp-helper (the fixture sets its clock)
	syncdBin   string // private copy of build/testclock/totp-syncd (enrollment at login)
	prodHelper string // private copy of build/pam-totp-helper, as installed
	testBin    string // this test binary, for re-executing it
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	skipReason = pamtest.SkipReason("e2e/login needs root: it adds local users and groups, writes " +
		"/etc/pam.d and /etc/sudoers.d, and runs sshd and sudo (run `make test` as root, as CI does)")
	if skipReason != "" {
		fmt.Fprintf(os.Stderr, "e2e/login: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	root, err := pamtest.Root()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/login: %v\n", err)
		return 1
	}
	bin, cleanup, err := pamtest.Build(root, "pam_totp.so", "testclock/pam-totp-helper", "testclock/totp-syncd",
		"pam-totp-helper")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/login: %v\n", err)
		return 1
	}
	defer cleanup()
	moduleSO, helperBin, syncdBin = bin["pam_totp.so"], bin["testclock/pam-totp-helper"], bin["testclock/totp-syncd"]
	prodHelper = bin["pam-totp-helper"]
	if testBin, err = os.Executable(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/login: %v\n", err)
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
