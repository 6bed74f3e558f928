//go:build linux

package sync

import (
	"errors"
	"fmt"
	"os"
	"strings"
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
	skip := func(reason string) int {
		skipReason = reason
		fmt.Fprintf(os.Stderr, "e2e/sync: skipping every test: %s\n", skipReason)
		return m.Run()
	}
	if reason := pamtest.SkipReason("e2e/sync needs root: it adds local users, and pam_totp.so wants a " +
		"root-owned helper and config (run `make test` as root, as CI does)"); reason != "" {
		return skip(reason)
	}
	root, err := pamtest.Root()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/sync: %v\n", err)
		return 1
	}
	var cleanup func()
	bin, cleanup, err = pamtest.Build(root, binaries...)
	if errors.Is(err, pamtest.ErrNotBuilt) {
		return skip(err.Error())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/sync: %v\n", err)
		return 1
	}
	defer cleanup()
	for _, name := range binaries {
		bin[strings.TrimPrefix(name, "testclock/")] = bin[name]
	}
	dir, err := os.MkdirTemp("", "pamtotp-clock-")
	if err == nil {
		defer os.RemoveAll(dir)
		clk, err = pamtest.NewClock(dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/sync: %v\n", err)
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
