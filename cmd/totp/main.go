// Command totp is the user's command for their TOTP tokens on a login node: enroll, list,
// status, rename, remove and backup-codes, through totp-syncd's D-Bus service
// (docs/enrollment.md, "totp CLI"). The logic is in pkg/enrollcli.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/pam-totp/pam-totp/pkg/enrollcli"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/version"
)

const usage = `usage: totp [--bus ADDRESS] COMMAND
  enroll [--name N] [--qr half|full|ascii]  add a token (QR code, then a code from the app)
  list                                      your tokens and whether they are active here
  status                                    this node's sync status
  rename ID NAME                            rename a token
  remove ID                                 remove a token (asks for a code)
  backup-codes                              replace your backup codes (asks for a code)
`

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
	fs := flag.NewFlagSet("totp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bus := fs.String("bus", "", "D-Bus address (default $DBUS_SYSTEM_BUS_ADDRESS or the system bus)")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "totp", version.Version)
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := rest[0], rest[1:]
	sub := flag.NewFlagSet("totp "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	name := sub.String("name", "", "the new token's name (enroll)")
	qr := sub.String("qr", "", "QR code drawing: half, full or ascii (enroll; default from $TERM and the locale)")
	if err := sub.Parse(rest); err != nil {
		return 2
	}
	rest = sub.Args()
	want := map[string]int{"enroll": 0, "list": 0, "status": 0, "rename": 2, "remove": 1, "backup-codes": 0}
	n, ok := want[cmd]
	if !ok || len(rest) != n {
		fs.Usage()
		return 2
	}
	mode := qrterm.DetectMode(os.Getenv("TERM"), qrterm.LocaleIsUTF8(os.Getenv))
	if *qr != "" {
		m, err := qrterm.ParseMode(*qr)
		if err != nil {
			fmt.Fprintf(stderr, "totp: %v\n", err)
			return 2
		}
		mode = m
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupted(cancel, stdin, stderr)
	svc, err := enrollcli.Dial(ctx, *bus)
	if err != nil {
		fmt.Fprintf(stderr, "totp: %s\n", token.Clean(err.Error()))
		return 1
	}
	defer svc.Close()
	c := &enrollcli.CLI{Svc: svc, In: bufio.NewReader(stdin), Out: stdout, QR: mode}
	if term.IsTerminal(int(stdin.Fd())) {
		c.ReadSecret = func(prompt string) (string, error) {
			fmt.Fprint(stdout, prompt)
			b, err := term.ReadPassword(int(stdin.Fd()))
			fmt.Fprintln(stdout)
			return string(b), err
		}
	}
	switch cmd {
	case "enroll":
		err = c.Enroll(ctx, *name)
	case "list":
		err = c.List(ctx)
	case "status":
		err = c.Status(ctx)
	case "rename":
		err = c.Rename(ctx, rest[0], rest[1])
	case "remove":
		err = c.Remove(ctx, rest[0])
	case "backup-codes":
		err = c.BackupCodes(ctx)
	}
	if err != nil {
		var ue *refusal.Error
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "totp: %s\n", token.Clean(ue.Message))
		} else {
			fmt.Fprintf(stderr, "totp: %s\n", token.Clean(err.Error()))
		}
		return 1
	}
	return 0
}
