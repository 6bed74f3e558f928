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
