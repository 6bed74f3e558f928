package clock

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Where a testclock build finds its clock file. Only the testclock build and tests refer to them.
const (
	Env       = "PAM_TOTP_TEST_CLOCK" // environment variable of the daemons
	ModuleArg = "test_clock="         // prefix of the PAM helper's module argument
)

// WriteOffset makes the clock file at path say that the components' clock runs offset ahead of
// the wall clock (behind when negative). The file is replaced atomically: a reader never sees a
// half-written one.
func WriteOffset(path string, offset time.Duration) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(offset.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("write clock file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write clock file: %w", err)
	}
	return nil
}

// readOffset is the offset the clock file at path holds.
func readOffset(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read clock file: %w", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("clock file %s: %w", path, err)
	}
	return d, nil
}
