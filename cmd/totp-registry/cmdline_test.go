package main

import (
	"testing"

	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

func TestCommandLine(t *testing.T) {
	t.Parallel()
	cmdlinetest.Run(t, run, append(cmdlinetest.Common("totp-registry"),
		cmdlinetest.Case{Name: "rotate-key --help", Args: []string{"rotate-key", "--help"}, Stdout: "Usage:\n  totp-registry rotate-key"},
		cmdlinetest.Case{Name: "rotate-key with an argument", Args: []string{"rotate-key", "x"}, Code: 2,
			Stderr: "totp-registry: rotate-key: wrong number of arguments\nusage: totp-registry rotate-key"},
		cmdlinetest.Case{Name: "--check-config with a command", Args: []string{"--check-config", "rotate-key"}, Code: 2,
			Stderr: "totp-registry: rotate-key: flag provided but not defined: --check-config"},
		cmdlinetest.Case{Name: "no config", Args: []string{"--config", "/nonexistent/registry.conf"}, Code: 1,
			Stderr: "totp-registry: "},
	))
}
