//go:build testclock

package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTestclockNow(t *testing.T) {
	path, far := farClock(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("tomorrow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env, arg string
		want     time.Time // zero: a panic is wanted
	}{
		{name: "nothing named: wall clock", want: time.Now()},
		{name: "env", env: path, want: far},
		{name: "module argument", arg: path, want: far},
		{name: "module argument over env", env: bad, arg: path, want: far},
		{name: "missing file", env: filepath.Join(t.TempDir(), "none")},
		{name: "malformed file", env: bad},
		{name: "malformed file as module argument", arg: bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(Env, tt.env)
			argPath.Store(nil)
			t.Cleanup(func() { argPath.Store(nil) })
			if tt.arg != "" {
				UseModuleArgs([]string{"debug", ModuleArg + tt.arg})
			}
			defer func() {
				if r := recover(); (r != nil) != tt.want.IsZero() {
					t.Errorf("Now() panicked with %v, want a panic: %v", r, tt.want.IsZero())
				}
			}()
			if got := Now(); got.Sub(tt.want).Abs() > time.Minute {
				t.Errorf("Now() = %v, want about %v", got, tt.want)
			}
		})
	}
}

// Now follows every new offset at once, however quickly the file is rewritten.
func TestTestclockFollowsRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	t.Setenv(Env, path)
	for i := range 20 {
		d := time.Duration(1+i%2) * time.Hour // "1h0m0s", "2h0m0s": the same size, often the same mtime
		if err := WriteOffset(path, d); err != nil {
			t.Fatal(err)
		}
		if got, want := Now(), time.Now().Add(d); got.Sub(want).Abs() > time.Minute {
			t.Fatalf("write %d: Now() = %v, want about %v", i, got, want)
		}
	}
}
