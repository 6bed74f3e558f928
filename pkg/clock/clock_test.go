package clock

import (
	"path/filepath"
	"testing"
	"time"
)

func TestWriteOffsetRoundTrip(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 1, -1, 17*time.Second + 123456789, -90 * 24 * time.Hour, 10 * 365 * 24 * time.Hour} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "clock")
			if err := WriteOffset(path, d); err != nil {
				t.Fatal(err)
			}
			got, err := readOffset(path)
			if err != nil || got != d {
				t.Errorf("readOffset(WriteOffset(%v)) = %v, %v, want %v", d, got, err, d)
			}
		})
	}
}

// farClock is a clock file ten years ahead and the instant a clock that read it would show.
func farClock(t *testing.T) (path string, far time.Time) {
	t.Helper()
	const offset = 10 * 365 * 24 * time.Hour
	path = filepath.Join(t.TempDir(), "clock")
	if err := WriteOffset(path, offset); err != nil {
		t.Fatal(err)
	}
	return path, time.Now().Add(offset)
}
