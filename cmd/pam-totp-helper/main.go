// Command pam-totp-helper is the verifier that pam_totp.so starts for each authentication.
//
// It is exec'd by the module with argv {path, "--pam"}, a clean environment, /dev/null on fds
// 0-2 and the module's socket on fd 3 (docs/protocol.md). It reads one request, decides with
// package verify, and answers with a verdict. It never writes to stdout or stderr: they belong to
// sshd or sudo. Admins may run `pam-totp-helper --check-config [--config FILE]`.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/pam-totp/pam-totp/pkg/authlog"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/verify"
	"github.com/pam-totp/pam-totp/pkg/version"
)

// socketFD is where the module puts its end of the socketpair.
const socketFD = 3

func main() {
	debug.SetTraceback("none") // a panic must not print anything about the login
	if len(os.Args) == 2 && os.Args[1] == "--pam" {
		os.Exit(servePAM())
	}
	os.Exit(admin(os.Args[1:]))
}

// servePAM runs one exchange with the module (package verify, as the resident verifier does). Its
// exit status is 0 whenever it got as far as sending a verdict.
func servePAM() int {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	verify.Exchange{
		Config:    config.Load,
		Transport: "helper",
		Args:      clock.UseModuleArgs, // test_clock=FILE moves the clock of a testclock build only
		Log: func(debug bool) *slog.Logger {
			log, c := authlog.New("", "pam-totp", debug)
			closers = append(closers, c)
			return log
		},
	}.Serve(os.NewFile(socketFD, "pam_totp socket"))
	return 0
}

// admin handles the commands an admin runs by hand.
func admin(args []string) int {
	fs := flag.NewFlagSet("pam-totp-helper", flag.ContinueOnError)
	check := fs.Bool("check-config", false, "parse and validate the config, then exit")
	path := fs.String("config", paths.NodeConfig(), "config file")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *showVersion:
		fmt.Println("pam-totp-helper", version.Version)
		return 0
	case *check:
		if _, err := config.Check(*path); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		fmt.Printf("%s: OK\n", *path)
		return 0
	}
	fmt.Fprintln(os.Stderr, "pam-totp-helper is started by pam_totp.so; admins may run --check-config or --version")
	return 2
}
