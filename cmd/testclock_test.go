package cmd_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/clock"
)

// build compiles ./name as the Makefile does (-trimpath) with the given tags into dir.
func build(t *testing.T, dir, name, tags string) []byte {
	t.Helper()
	out := filepath.Join(dir, name+"."+tags)
	cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-o", out, "./"+name)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %q ./%s: %v\n%s", tags, name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProductionHasNoTestClock: only a testclock build (make build-testclock) knows the clock
// file's environment variable and module argument; `make build`'s binaries read the wall clock.
func TestProductionHasNoTestClock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hooks := []string{clock.Env, clock.ModuleArg}
	for _, name := range []string{"pam-totp-helper", "totp-admin", "totp-registry", "totp-syncd", "totp"} {
		t.Run(name, func(t *testing.T) {
			b := build(t, dir, name, "")
			for _, h := range hooks {
				if bytes.Contains(b, []byte(h)) {
					t.Errorf("production %s holds %q, want no test clock", name, h)
				}
			}
		})
	}
	// The check can see the hook: the testclock helper holds both.
	b := build(t, dir, "pam-totp-helper", "testclock")
	for _, h := range hooks {
		if !bytes.Contains(b, []byte(h)) {
			t.Errorf("testclock pam-totp-helper lacks %q: this test cannot see the hook", h)
		}
	}
}
