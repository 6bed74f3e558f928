//go:build linux

package portal

import (
	"fmt"
	"os"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// userPrefix starts the names of the local users this package adds (e2e/login and e2e/sync use
// others, so that the packages run in parallel).
const userPrefix = "ptp-"

// chromiumPath is Debian's chromium (contrib/scripts/deps.sh installs it).
const chromiumPath = "/usr/bin/chromium"

var (
	skipReason string            // set when the tests cannot run here; every test skips with it
	bin        map[string]string // name in build/ (testclock/ left off) -> private copy
	clk        *pamtest.Clock    // the clock of the registry, the node and the helper
	repoRoot   string
)

// binaries are the build outputs the package runs.
var binaries = []string{"pam_totp.so", "testclock/pam-totp-helper", "testclock/totp-registry", "testclock/totp-syncd"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	s, cleanup, err := pamtest.Prepare("e2e/portal needs root: it adds local users for libpam logins, and "+
		"pam_totp.so wants a root-owned helper (run `make test` as root, as CI does)", binaries...)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/portal: %v\n", err)
		return 1
	}
	skipReason = s.Skip
	if _, err := os.Stat(chromiumPath); err != nil && skipReason == "" {
		skipReason = fmt.Sprintf("no %s (apt-get install chromium, as contrib/scripts/deps.sh does): %v", chromiumPath, err)
	}
	if skipReason != "" {
		fmt.Fprintf(os.Stderr, "e2e/portal: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	repoRoot, bin, clk = s.Root, s.Bin, s.Clock
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
