//go:build linux

package sync

import (
	"fmt"
	"os"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// userPrefix starts the names of the local users this package adds: e2e/login uses
// another, so that the packages can run in parallel.
const userPrefix = "pts-"

var (
	skipReason string            // set when the tests cannot run here; every test skips with it
	bin        map[string]string // name in build/ (testclock/ left off) -> private copy
	clk        *pamtest.Clock    // the clock of every helper, totp-syncd and totp-registry
)

// binaries are the build outputs the suite runs: the module from `make build`, the Go programs
// from `make build-testclock`, so that tests set their clock.
var binaries = []string{"pam_totp.so", "testclock/pam-totp-helper", "testclock/totp-admin",
	"testclock/totp-registry", "testclock/totp-syncd"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	s, cleanup, err := pamtest.Prepare("e2e/sync needs root: it adds local users, and pam_totp.so wants a "+
		"root-owned helper and config (run `make test` as root, as CI does)", binaries...)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/sync: %v\n", err)
		return 1
	}
	if skipReason = s.Skip; skipReason != "" {
		fmt.Fprintf(os.Stderr, "e2e/sync: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	bin, clk = s.Bin, s.Clock
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
