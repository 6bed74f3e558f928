// Command totp is the user's command for their TOTP tokens on a login node: enroll, list,
// status, rename, remove and backup-codes, through totp-syncd's D-Bus service
// (docs/enrollment.md, "totp CLI"). The logic is in pkg/enrollcli.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/enrollcli"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// interrupted makes Ctrl-C (or SIGTERM) end the command at once, also while a prompt waits for
// a line: the terminal's echo is restored and the exit status is 130. Nothing half-done is left
// but a pending token, which expires by itself.
func interrupted(cancel context.CancelFunc, stdin *os.File, stderr io.Writer) {
	restore := func() {}
	if fd := int(stdin.Fd()); term.IsTerminal(fd) {
		if st, err := term.GetState(fd); err == nil {
			restore = func() { term.Restore(fd, st) }
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		restore()
		fmt.Fprintln(stderr, "\ntotp: interrupted (a token begun and not finished stays pending until it expires)")
		os.Exit(130)
	}()
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	cmdline.Setup(root, stdout, stderr)
	return cmdline.Run(root, args, token.Clean, func(err error) int {
		var ue *refusal.Error
		if errors.As(err, &ue) {
			err = errors.New(ue.Message)
		}
		fmt.Fprintf(stderr, "totp: %s\n", token.Clean(err.Error()))
		return 1
	})
}

// newRoot builds the command tree; every verb runs through session.
func newRoot(stdin *os.File, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "totp [--bus ADDRESS] COMMAND",
		Short:   "Your TOTP tokens on this login node",
		Long:    "totp enrolls and manages your TOTP tokens on this login node, through totp-syncd on the system bus.",
		Version: version.Version,
	}
	bus := root.PersistentFlags().String("bus", "", "D-Bus `ADDRESS` (default $DBUS_SYSTEM_BUS_ADDRESS or the system bus)")
	// verb adds a verb that runs f on a connected CLI.
	verb := func(use, short string, args cobra.PositionalArgs, f func(context.Context, *enrollcli.CLI, []string) error) *cobra.Command {
		cmd := &cobra.Command{Use: use, Short: short, Args: args, RunE: func(_ *cobra.Command, args []string) error {
			return session(*bus, stdin, stdout, stderr, func(ctx context.Context, c *enrollcli.CLI) error { return f(ctx, c, args) })
		}}
		root.AddCommand(cmd)
		return cmd
	}
	var name, qr *string
	var mode *qrterm.Mode // --qr, checked before totp-syncd is asked anything
	enroll := verb("enroll", "Add a token (QR code, then a code from the app)", cmdline.NoArgs,
		func(ctx context.Context, c *enrollcli.CLI, _ []string) error {
			if mode != nil {
				c.QR = *mode
			}
			return c.Enroll(ctx, *name)
		})
	name = enroll.Flags().String("name", "", "the new token's `NAME`")
	qr = enroll.Flags().String("qr", "", "QR code drawing `MODE`: half, full or ascii (default from $TERM and the locale)")
	enroll.PreRunE = func(*cobra.Command, []string) error {
		if *qr == "" {
			return nil
		}
		m, err := qrterm.ParseMode(*qr)
		if err != nil {
			return cmdline.Usagef("enroll: %v", err)
		}
		mode = &m
		return nil
	}
	verb("list", "Your tokens and whether they are active here", cmdline.NoArgs,
		func(ctx context.Context, c *enrollcli.CLI, _ []string) error { return c.List(ctx) })
	verb("status", "This node's sync status", cmdline.NoArgs,
		func(ctx context.Context, c *enrollcli.CLI, _ []string) error { return c.Status(ctx) })
	verb("rename ID NAME", "Rename a token", cmdline.ExactArgs(2),
		func(ctx context.Context, c *enrollcli.CLI, args []string) error {
			return c.Rename(ctx, args[0], args[1])
		})
	verb("remove ID", "Remove a token (asks for a code)", cmdline.ExactArgs(1),
		func(ctx context.Context, c *enrollcli.CLI, args []string) error { return c.Remove(ctx, args[0]) })
	verb("backup-codes", "Replace your backup codes (asks for a code)", cmdline.NoArgs,
		func(ctx context.Context, c *enrollcli.CLI, _ []string) error { return c.BackupCodes(ctx) })
	return root
}

// session connects to totp-syncd on bus and runs f; Ctrl-C ends it at once (interrupted).
func session(bus string, stdin *os.File, stdout, stderr io.Writer, f func(context.Context, *enrollcli.CLI) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupted(cancel, stdin, stderr)
	svc, err := enrollcli.Dial(ctx, bus)
	if err != nil {
		return err
	}
	defer svc.Close()
	c := &enrollcli.CLI{Svc: svc, In: bufio.NewReader(stdin), Out: stdout,
		QR: qrterm.DetectMode(os.Getenv("TERM"), qrterm.LocaleIsUTF8(os.Getenv))}
	if term.IsTerminal(int(stdin.Fd())) {
		c.ReadSecret = func(prompt string) (string, error) {
			fmt.Fprint(stdout, prompt)
			b, err := term.ReadPassword(int(stdin.Fd()))
			fmt.Fprintln(stdout)
			return string(b), err
		}
	}
	return f(ctx, c)
}
