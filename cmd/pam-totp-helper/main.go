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
	"os"
	"runtime/debug"

	"github.com/pam-totp/pam-totp/pkg/authlog"
	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
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

// servePAM runs one exchange with the module. Its exit status is 0 whenever a verdict was sent.
func servePAM() (status int) {
	log, closer := authlog.New("", "pam-totp", false)
	defer closer.Close()
	conn := protocol.NewConn(os.NewFile(socketFD, "pam_totp socket"))
	defer func() {
		if r := recover(); r != nil {
			// No values in the message: a panic value could hold an answer.
			log.Error("helper panic; denying", "stack", string(debug.Stack()))
			_ = conn.Done(protocol.SystemErr)
			status = 0
		}
	}()
	req, err := conn.ReadRequest()
	if err != nil {
		log.Error("bad request from pam_totp.so; denying", "err", err)
		_ = conn.Done(protocol.SystemErr)
		return 0
	}
	if req.Debug {
		log, closer = authlog.New("", "pam-totp", true)
		defer closer.Close()
	}
	cfg, warnings, err := config.Load(req.Config)
	if err != nil {
		log.Error("cannot load config; denying", "user", req.User, "service", req.Service, "err", err)
		_ = conn.Error("Two-factor authentication is misconfigured on this host.")
		_ = conn.Done(protocol.SystemErr)
		return 0
	}
	for _, w := range warnings {
		log.Warn("config", "path", req.Config, "warning", w)
	}
	log.Debug("request", "user", req.User, "service", req.Service, "rhost", req.RHost,
		"groups", len(req.Groups), "args", req.Args)
	clock.UseModuleArgs(req.Args) // test_clock=FILE moves the clock of a testclock build only
	v := verify.New(cfg, log)
	v.Enroll = &rootsock.Client{Path: cfg.SocketPath()} // connects only when enrollment is offered
	verdict := v.Authenticate(req, conn)
	if err := conn.Done(verdict); err != nil {
		log.Error("cannot send verdict", "user", req.User, "err", err)
	}
	return 0
}

// admin handles the commands an admin runs by hand.
func admin(args []string) int {
	fs := flag.NewFlagSet("pam-totp-helper", flag.ContinueOnError)
	check := fs.Bool("check-config", false, "parse and validate the config, then exit")
	path := fs.String("config", config.DefaultPath, "config file")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *showVersion:
		fmt.Println("pam-totp-helper", version.Version)
		return 0
	case *check:
		_, warnings, err := config.Load(*path)
		for _, w := range warnings {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		fmt.Printf("%s: OK\n", *path)
		return 0
	}
	fmt.Fprintln(os.Stderr, "pam-totp-helper is started by pam_totp.so; admins may run --check-config or --version")
	return 2
}
