//go:build !testclock

package clock

import "time"

// Now is the wall clock.
func Now() time.Time { return time.Now() }

// UseModuleArgs does nothing: a production helper ignores test_clock=.
func UseModuleArgs([]string) {}
