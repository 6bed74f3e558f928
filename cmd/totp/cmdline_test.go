package main

import (
	"io"
	"os"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

func TestCommandLine(t *testing.T) {
	t.Parallel()
	run := func(args []string, stdout, stderr io.Writer) int { return run(args, os.Stdin, stdout, stderr) }
	cmdlinetest.Run(t, run, append(cmdlinetest.Common("totp"),
		cmdlinetest.Case{Name: "enroll --help", Args: []string{"enroll", "--help"}, Stdout: "Usage:\n  totp enroll [flags]"},
		cmdlinetest.Case{Name: "help enroll", Args: []string{"help", "enroll"}, Stdout: "--qr MODE"},
		cmdlinetest.Case{Name: "no command", Args: nil, Code: 2, Stderr: "totp: no command\nusage: totp"},
		cmdlinetest.Case{Name: "rename with one argument", Args: []string{"rename", "id"}, Code: 2,
			Stderr: "totp: rename: wrong number of arguments\nusage: totp rename ID NAME"},
		cmdlinetest.Case{Name: "--name is enroll's", Args: []string{"list", "--name", "x"}, Code: 2,
			Stderr: "totp: list: flag provided but not defined: --name"},
		cmdlinetest.Case{Name: "bad qr mode", Args: []string{"enroll", "--qr", "huge"}, Code: 2, Stderr: "totp: enroll: qrterm: unknown QR code mode"},
	))
}
