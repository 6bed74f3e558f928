//go:build linux

package pamtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// Suite is what the TestMain of an end-to-end package that runs the registry chain prepares.
type Suite struct {
	// Skip, when not "", is why the package's tests cannot run here; each test skips with it.
	Skip string
	Root string // the repository root
	// Bin maps each name given to Prepare, and the same name without "testclock/", to its
	// private copy.
	Bin   map[string]string
	Clock *Clock // one clock file for every testclock binary the package starts
}

// Prepare is the common start of such a TestMain: whether the tests can run here (whyRoot as in
// SkipReason), the build with private copies of binaries (a build that lacks one of them makes
// every test skip), and a clock file. The error is for a failed build or setup: the package
// fails. cleanup removes the copies and the clock; it is never nil.
func Prepare(whyRoot string, binaries ...string) (s *Suite, cleanup func(), err error) {
	s = &Suite{}
	cleanup = func() {}
	if s.Skip = SkipReason(whyRoot); s.Skip != "" {
		return s, cleanup, nil
	}
	if s.Root, err = Root(); err != nil {
		return nil, cleanup, err
	}
	bin, removeBin, err := Build(s.Root, binaries...)
	if errors.Is(err, ErrNotBuilt) {
		s.Skip = err.Error()
		return s, cleanup, nil
	}
	if err != nil {
		return nil, cleanup, err
	}
	for _, name := range binaries {
		bin[strings.TrimPrefix(name, "testclock/")] = bin[name]
	}
	s.Bin = bin
	dir, err := os.MkdirTemp("", "pamtotp-clock-")
	if err != nil {
		removeBin()
		return nil, cleanup, fmt.Errorf("clock directory: %w", err)
	}
	cleanup = func() { removeBin(); os.RemoveAll(dir) }
	if s.Clock, err = NewClock(dir); err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return s, cleanup, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 5 ms until it is true or d passed (then the test fails with what
// and cond's last error); it returns how long it took.
func Eventually(t testing.TB, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		if err != nil {
			last = err
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v (last error: %v)", what, d, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
