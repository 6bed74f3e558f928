//go:build linux

package pamtest

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// Clock is the clock the binaries of `make build-testclock` decide by (pkg/clock): a file
// saying how far it runs ahead of the wall clock. A test moves it to the start of a time step
// instead of sleeping until a step has time left; from there it runs on with the wall clock, so
// leases and timeouts in the components behave as in production.
type Clock struct {
	Path string // the clock file

	mu     sync.Mutex
	offset time.Duration
}

// NewClock writes a clock file in dir that keeps the wall clock.
func NewClock(dir string) (*Clock, error) {
	c := &Clock{Path: filepath.Join(dir, "testclock")}
	return c, clock.WriteOffset(c.Path, 0)
}

// Env is the environment entry that points a daemon of a testclock build at the clock.
func (c *Clock) Env() string { return clock.Env + "=" + c.Path }

// ModuleArg is the pam_totp.so argument that points a testclock helper at the clock.
func (c *Clock) ModuleArg() string { return clock.ModuleArg + c.Path }

// Now is the instant the components see.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Step is the time step of period seconds that the components are in.
func (c *Clock) Step(period int) uint64 { return totp.Step(c.Now(), period) }

// Set moves the components' clock so that it reads at now and runs on from there.
func (c *Clock) Set(t testing.TB, at time.Time) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	offset := time.Until(at)
	if err := clock.WriteOffset(c.Path, offset); err != nil {
		t.Fatal(err)
	}
	c.offset = offset
}

// NextStep moves the components' clock forward to the start of the next time step of period
// seconds and returns that step: a test that uses codes of neighbouring steps has the whole
// step before the components' step changes.
func (c *Clock) NextStep(t testing.TB, period int) uint64 {
	t.Helper()
	next := c.Step(period) + 1
	c.Set(t, time.Unix(int64(next)*int64(period), 0))
	return next
}
