package cmdline

import (
	"io"
	"testing"

	"github.com/spf13/cobra"
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
