package cmdline

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

// A command that sets no Args would take any arguments silently: Setup refuses the tree.
func TestSetupWantsArgs(t *testing.T) {
	t.Parallel()
	root := &cobra.Command{Use: "x"}
	root.AddCommand(&cobra.Command{Use: "leaf", RunE: func(*cobra.Command, []string) error { return nil }})
	defer func() {
		if r := recover(); r != "cmdline: command x leaf sets no Args" {
			t.Errorf("Setup of a command without Args: recover() = %v, want the panic naming it", r)
		}
	}()
	Setup(root, io.Discard, io.Discard)
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"ok", nil, 0},
		{"usage", Usagef("bad"), 2},
		{"reported", ExitCode(78), 78},
		{"other", io.ErrUnexpectedEOF, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := &cobra.Command{Use: "x", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return tt.err }}
			Setup(root, io.Discard, io.Discard)
			if got := Run(root, nil, func(s string) string { return s }, func(error) int { return 9 }); got != tt.want {
				t.Errorf("Run with %v = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// completionRoot is a small tree for TestBashCompletion; the test binary runs it when
// childEnv is set (bash calls the program back for its candidates).
func completionRoot() *cobra.Command {
	root := &cobra.Command{Use: "prog", Args: NoArgs}
	token := &cobra.Command{Use: "token"}
	for _, v := range []string{"add", "list"} {
		token.AddCommand(&cobra.Command{Use: v, Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }})
	}
	root.AddCommand(token, &cobra.Command{Use: "unlock", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }})
	Setup(root, os.Stdout, os.Stderr)
	return root
}

const childEnv = "CMDLINE_TEST_PROG"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(Run(completionRoot(), os.Args[1:], func(s string) string { return s }, func(error) int { return 1 }))
	}
	os.Exit(m.Run())
}

// TestBashCompletion: the script `completion bash` prints completes verbs in a real bash.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "prog")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "prog.bash")
	gen := exec.Command(filepath.Join(dir, "prog"), "completion", "bash")
	gen.Env = append(os.Environ(), childEnv+"=1")
	out, err := gen.Output()
	if err == nil {
		err = os.WriteFile(script, out, 0o644)
	}
	if err != nil {
		t.Fatal("prog completion bash: ", err)
	}
	for line, want := range map[string]string{
		"prog tok":    "token",
		"prog token ": "add list",
		"prog un":     "unlock",
		"prog ":       "completion help token unlock",
	} {
		if got := cmdlinetest.Complete(t, script, dir, []string{childEnv + "=1"}, line); got != want {
			t.Errorf("completion of %q = %q, want %q", line, got, want)
		}
	}
}

// TestManPages: the hidden __man verb writes one page per command, from the same tree.
func TestManPages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code := Run(completionRoot(), []string{"__man", "8", dir}, func(s string) string { return s }, func(error) int { return 1 }); code != 0 {
		t.Fatalf("__man = exit %d", code)
	}
	for _, page := range []string{"prog.8", "prog-token.8", "prog-token-add.8", "prog-token-list.8", "prog-unlock.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), ".SH NAME") || !strings.Contains(string(b), `.TH "PROG`) {
			t.Errorf("%s: %v\n%s", page, err, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "prog.8")); strings.Contains(string(b), "__man") {
		t.Error("the hidden verb has a page or a mention")
	}
}
