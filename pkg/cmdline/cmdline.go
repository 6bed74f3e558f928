// Package cmdline holds the rules the command lines of totp-admin, totp, totp-syncd and
// totp-registry share, on top of github.com/spf13/cobra: --help and -h (and the help verb)
// print usage to standard output and exit 0; an unknown verb, a wrong number of arguments or a
// bad flag is a usage error, said on standard error with the command's usage line, exit 2; a
// command with verbs below it is never run by itself; `completion bash` prints a bash completion
// script made from the same tree (make install puts it where bash-completion finds it), and the
// hidden `__man SECTION DIR` writes the man pages of the tree (make install).
//
// The login helper keeps package flag and does not link this package.
package cmdline

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// ErrUsage marks usage errors: they exit with status 2.
var ErrUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
func (e usageError) Unwrap() error { return ErrUsage }

// Usagef returns a usage error.
func Usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// ExitCode is an error for a command that has already said what went wrong: Run exits with it
// and prints nothing more.
type ExitCode int

func (c ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// Name is the command's path below the root ("token add"), "" for the root.
func Name(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// prefixed puts the command's name before msg: "token add: msg", or msg alone for the root.
func prefixed(cmd *cobra.Command, msg string) string {
	if n := Name(cmd); n != "" {
		return n + ": " + msg
	}
	return msg
}

// RangeArgs accepts min to max positional arguments.
func RangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			if len(args) > 0 && max == 0 && cmd.HasSubCommands() {
				return unknown(cmd, args[0])
			}
			return Usagef("%s", prefixed(cmd, "wrong number of arguments"))
		}
		return nil
	}
}

// ExactArgs accepts n positional arguments.
func ExactArgs(n int) cobra.PositionalArgs { return RangeArgs(n, n) }

// NoArgs accepts none; on a command with verbs below it, an argument is an unknown verb.
var NoArgs = RangeArgs(0, 0)

func unknown(cmd *cobra.Command, verb string) error {
	if !cmd.HasParent() {
		return Usagef("unknown command %q", verb)
	}
	return Usagef("%s %s: unknown command", Name(cmd), verb)
}

// Setup applies the shared rules to root and every command below it; call it once the tree is
// built. A command with verbs below it and nothing to run of its own runs WantVerb. Every other
// command must set Args:
// Setup panics on one that does not, so that a missing one fails every test.
func Setup(root *cobra.Command, stdout, stderr io.Writer) {
	root.SilenceErrors, root.SilenceUsage = true, true
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		var ne *pflag.NotExistError
		if errors.As(err, &ne) {
			// The wording of Go's package flag, which these commands used before cobra.
			msg := "flag provided but not defined: --" + ne.GetSpecifiedName()
			if sh := ne.GetSpecifiedShortnames(); len(sh) > 1 {
				msg = fmt.Sprintf("flag provided but not defined: -%s (long flags take two dashes: --%s)", sh, sh)
			} else if sh != "" {
				msg = "flag provided but not defined: -" + ne.GetSpecifiedName()
			}
			err = errors.New(msg)
		}
		return Usagef("%s", prefixed(cmd, err.Error()))
	})
	if root.Version != "" {
		root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	}
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [COMMAND]...",
		Short: "Show the usage of a command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return Usagef("help: unknown command %q", strings.Join(args, " "))
			}
			return cmd.Help()
		},
	})
	root.AddCommand(&cobra.Command{
		Use:       "completion SHELL",
		Short:     "Print the completion script for SHELL (bash)",
		Args:      ExactArgs(1),
		ValidArgs: []string{"bash"},
		RunE: func(c *cobra.Command, args []string) error {
			if args[0] != "bash" {
				return Usagef("completion: %q: only bash is supported", args[0])
			}
			return c.Root().GenBashCompletionV2(c.OutOrStdout(), true)
		},
	})
	root.AddCommand(&cobra.Command{
		Use:    "__man SECTION DIR",
		Short:  "Write the man pages of every command into DIR",
		Hidden: true,
		Args:   ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			root.DisableAutoGenTag = true // no date: the pages of one version stay the same
			return doc.GenManTree(root, &doc.GenManHeader{Section: args[0], Source: root.Name() + " " + root.Version,
				Manual: "pam-totp"}, args[1])
		},
	})
	walk(root)
}

func walk(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args, cmd.RunE = cobra.ArbitraryArgs, WantVerb
	}
	if cmd.Args == nil {
		panic("cmdline: command " + cmd.CommandPath() + " sets no Args")
	}
	for _, c := range cmd.Commands() {
		walk(c)
	}
}

// WantVerb is the run of a command with verbs below it when none is given, or an unknown one: a
// usage error that names them ("token: want add, list, remove, disable or enable").
func WantVerb(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknown(cmd, args[0])
	}
	if !cmd.HasParent() {
		return Usagef("no command")
	}
	var verbs []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			verbs = append(verbs, c.Name())
		}
	}
	want := strings.Join(verbs, ", ")
	if i := strings.LastIndex(want, ", "); i >= 0 {
		want = want[:i] + " or " + want[i+2:]
	}
	return Usagef("%s", prefixed(cmd, "want "+want))
}

// Run runs root with args and returns the exit status: 0; 2 after a usage error, said on root's
// standard error as "NAME: MESSAGE", then the usage line; an ExitCode's; or what fail returns
// for any other error (fail says it in the binary's own words).
func Run(root *cobra.Command, args []string, clean func(string) string, fail func(error) int) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	var code ExitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(root.ErrOrStderr(), "%s: %s\nusage: %s\nRun '%s --help' for more.\n",
			root.Name(), clean(err.Error()), cmd.UseLine(), cmd.CommandPath())
		return 2
	}
	return fail(err)
}
