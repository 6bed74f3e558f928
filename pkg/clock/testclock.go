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

// read is the clock file last read: a registry import calls Now for every record, and a stat
// costs less than an open and a read.
var read atomic.Pointer[clockFile]

type clockFile struct {
	path   string
	fi     os.FileInfo
	offset time.Duration
}

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
	d, err := offset(path)
	if err != nil {
		panic(fmt.Sprintf("testclock build: %v", err))
	}
	return time.Now().Add(d)
}

// offset is the offset the clock file at path holds, read again whenever the file is another
// (WriteOffset renames a new one into place) or has changed.
func offset(path string) (time.Duration, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("read clock file: %w", err)
	}
	if c := read.Load(); c != nil && c.path == path && os.SameFile(c.fi, fi) &&
		c.fi.ModTime().Equal(fi.ModTime()) && c.fi.Size() == fi.Size() {
		return c.offset, nil
	}
	d, err := readOffset(path)
	if err != nil {
		return 0, err
	}
	read.Store(&clockFile{path: path, fi: fi, offset: d})
	return d, nil
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
