//go:build testclock

package clock

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// argPath is the clock file named by the helper's module arguments ("" when none).
var argPath atomic.Pointer[string]

// Now is the wall clock plus the offset in the clock file named by the helper's test_clock=
// module argument or else by PAM_TOTP_TEST_CLOCK; the wall clock when neither names one. It
// panics when the named file is missing or malformed.
func Now() time.Time {
	path := os.Getenv(Env)
	if p := argPath.Load(); p != nil {
		path = *p
	}
	if path == "" {
		return time.Now()
	}
	d, err := readOffset(path)
	if err != nil {
		panic(fmt.Sprintf("testclock build: %v", err))
	}
	return time.Now().Add(d)
}

// UseModuleArgs takes the clock file from a test_clock=FILE among the PAM helper's module
// arguments.
func UseModuleArgs(args []string) {
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, ModuleArg); ok {
			argPath.Store(&p)
		}
	}
}
