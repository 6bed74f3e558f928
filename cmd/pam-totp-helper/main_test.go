package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig runs the built helper's --check-config: a clean file passes; a typo fails with
// its place and the nearest key (a login only warns of it); a weakening value fails.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pam-totp-helper")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tests := []struct {
		name, text string
		wantCode   int
		wantOut    string
		wantErr    string
	}{
		{"clean", "window = 1\n", 0, ": OK\n", ""},
		{"typo", "window = 1\n[store]\nopen_timout = \"2s\"\n", 1, "",
			`error: unknown key "store.open_timout" at ` + filepath.Join(dir, "typo.conf") + `:3:1; did you mean "open_timeout"?`},
		{"weak value", "window = 99\n", 1, "", "error: config "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".conf")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "--check-config", "--config", path)
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			var exit *exec.ExitError
			if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			code := cmd.ProcessState.ExitCode()
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("pam-totp-helper --check-config (%q) = %d, stdout %q, stderr %q; want %d, %q, %q",
					tt.text, code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}
