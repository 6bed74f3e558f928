package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

// runInProcess runs totp-admin's command line in process, with an empty environment.
func runInProcess(args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: stdout, stderr: stderr,
		getenv: func(string) string { return "" }}
	return run(e, args)
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	needs := func(verb string, args ...string) cmdlinetest.Case {
		return cmdlinetest.Case{Name: strings.Join(args, " ") + " without a registry", Args: args, Code: 2,
			Stderr: "totp-admin: " + verb + ": needs --registry URL (or TOTP_REGISTRY)\nusage: totp-admin " + verb}
	}
	cmdlinetest.Run(t, runInProcess, append(cmdlinetest.Common("totp-admin"),
		cmdlinetest.Case{Name: "token --help", Args: []string{"token", "--help"}, Stdout: "Usage:\n  totp-admin token [flags]\n  totp-admin token [command]"},
		cmdlinetest.Case{Name: "token add -h", Args: []string{"token", "add", "-h"}, Stdout: "Usage:\n  totp-admin token add USER [flags]"},
		cmdlinetest.Case{Name: "help token add", Args: []string{"help", "token", "add"}, Stdout: "--secret-file FILE"},
		cmdlinetest.Case{Name: "user list --help without a registry", Args: []string{"user", "list", "--help"}, Stdout: "Usage:\n  totp-admin user list"},
		cmdlinetest.Case{Name: "token without a subcommand", Args: []string{"token"}, Code: 2,
			Stderr: "totp-admin: token: want add, assign, disable, enable, list, remove or unassign\nusage: totp-admin token"},
		cmdlinetest.Case{Name: "token with an unknown subcommand", Args: []string{"token", "frob"}, Code: 2, Stderr: "totp-admin: token frob: unknown command\n"},
		cmdlinetest.Case{Name: "import without a format", Args: []string{"import"}, Code: 2, Stderr: "totp-admin: import: want csv, google-authenticator or pskc\n"},
		cmdlinetest.Case{Name: "audit with an argument", Args: []string{"audit", "frob"}, Code: 2, Stderr: "totp-admin: audit frob: unknown command\n"},
		cmdlinetest.Case{Name: "too many arguments", Args: []string{"token", "remove", "alice", "id", "more"}, Code: 2,
			Stderr: "totp-admin: token remove: wrong number of arguments\nusage: totp-admin token remove USER ID"},
		cmdlinetest.Case{Name: "bad flag of a verb", Args: []string{"unlock", "alice", "--frob"}, Code: 2,
			Stderr: "totp-admin: unlock: flag provided but not defined: --frob\nusage: totp-admin unlock USER"},
		needs("user", "user", "list"),
		needs("node", "node", "add", "login1", "--scope", "c1"),
		needs("passcode", "passcode", "alice"),
		needs("audit", "audit"),
		needs("audit", "audit", "verify"),
		needs("compact", "compact", "--keep", "1"),
		cmdlinetest.Case{Name: "--reason without a registry", Args: []string{"reset", "alice", "--reason", "x"}, Code: 2,
			Stderr: "totp-admin: reset: --reason is for the registry's audit log: needs --registry URL (or TOTP_REGISTRY)"},
		cmdlinetest.Case{Name: "--scope without a registry", Args: []string{"import", "csv", "-", "--scope", "c1", "--config", "/nonexistent"}, Code: 2,
			Stderr: "totp-admin: import csv: --scope needs --registry URL (or TOTP_REGISTRY)"},
		cmdlinetest.Case{Name: "registry without a token file", Args: []string{"token", "list", "alice", "--registry", "https://registry.invalid"}, Code: 2,
			Stderr: "totp-admin: token list: no admin token: give --admin-token-file FILE or set TOTP_ADMIN_TOKEN_FILE\n"},
	))
}
