//go:build !testclock

package clock

import (
	"testing"
	"time"
)

// The production Now reads neither PAM_TOTP_TEST_CLOCK nor a test_clock= module argument.
func TestNowIgnoresTestClock(t *testing.T) {
	path, _ := farClock(t)
	t.Setenv(Env, path)
	UseModuleArgs([]string{ModuleArg + path})
	if got := Now(); time.Since(got).Abs() > time.Minute {
		t.Errorf("Now() = %v with %s and %s set, want the wall clock %v", got, Env, ModuleArg, time.Now())
	}
}
