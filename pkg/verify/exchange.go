package verify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// Exchange is what one exchange with pam_totp.so needs besides the connection. The helper (exec
// transport: its fd 3) and totp-syncd's resident verifier (socket transport) both run Serve, so
// a login is decided by the same code whichever way it came (docs/protocol.md).
type Exchange struct {
	// Config loads the config the request names: config.Load in the helper, a config.Cache in
	// the daemon.
	Config func(path string) (*config.Config, []string, error)
	// Log is the auth log, at debug level when the module asked for it.
	Log func(debug bool) *slog.Logger
	// Transport names the way the request came ("helper" or "socket"), for the log.
	Transport string
	// Args, if set, sees the module's arguments before anything is decided (the helper hands
	// them to clock.UseModuleArgs, which only a testclock build heeds).
	Args func(args []string)
	// Claims is the daemon's way to the registry for cluster-wide claims (claim.go); nil in the
	// helper and on a standalone node.
	Claims Claimer
	// Stores, if set, keeps the stores' files open between exchanges (Verifier.Stores).
	Stores *store.Resident
}

// Abandoned is what Serve returns instead of a verdict when pam_totp.so had hung up by the time
// its request was read: it gave up waiting for the resident verifier (connect_ms: the daemon was
// stopped or slow) and asked the helper, which decided that login. Serve then decides nothing:
// no prompt, no failure counted, no step burned, no grace recorded, no enrollment begun. It is
// no verdict of the protocol and is never sent.
const Abandoned protocol.Verdict = "abandoned"

// Serve runs one exchange on rw: it reads the request, loads its config, decides and sends the
// verdict, which it returns with the user ("" for both when no request came; Abandoned when the
// module had gone). Every failure ends in a denying verdict when one can still be sent; a panic
// is answered as SystemErr and logged without values (one could hold an answer).
func (e Exchange) Serve(rw io.ReadWriter) (user string, verdict protocol.Verdict) {
	log := e.Log(false)
	conn := protocol.NewConn(rw)
	defer func() {
		if r := recover(); r != nil {
			log.Error("verifier panic; denying", "transport", e.Transport, "stack", string(debug.Stack()))
			_ = conn.Done(protocol.SystemErr)
			verdict = protocol.SystemErr
		}
	}()
	req, err := conn.ReadRequest()
	if errors.Is(err, io.EOF) { // closed before a byte: a probe (totp-admin doctor), not a login
		log.Debug("connection closed before a request", "transport", e.Transport)
		return "", ""
	}
	if errors.Is(err, io.ErrUnexpectedEOF) && hungUp(rw) {
		log.Warn("request abandoned: pam_totp.so hung up in the middle of it; nothing decided",
			"transport", e.Transport)
		return "", Abandoned
	}
	if err != nil {
		log.Error("bad request from pam_totp.so; denying", "transport", e.Transport, "err", err)
		_ = conn.Done(protocol.SystemErr)
		return "", protocol.SystemErr
	}
	if e.Args != nil {
		e.Args(req.Args)
	}
	if req.Debug {
		log = e.Log(true)
	}
	// The module sends nothing between its request and the first prompt: if it has hung up by
	// now, nobody waits for this decision (on the socket: the module gave up after connect_ms and
	// a helper decided the login), so deciding it here too could only count, burn or record what
	// nobody asked for, and log a second verdict.
	if hungUp(rw) {
		log.Warn("request abandoned: pam_totp.so hung up before it was read (on the socket: it gave up waiting and asked the helper); nothing decided",
			"user", req.User, "service", req.Service, "rhost", req.RHost, "transport", e.Transport)
		return req.User, Abandoned
	}
	cfg, warnings, err := e.Config(req.Config)
	if err != nil {
		log.Error("cannot load config; denying", "user", req.User, "service", req.Service, "err", err)
		_ = conn.Error(msgMisconfig)
		_ = conn.Done(protocol.SystemErr)
		return req.User, protocol.SystemErr
	}
	for _, w := range warnings {
		log.Warn("config", "path", req.Config, "warning", w)
	}
	log.Debug("request", "user", req.User, "service", req.Service, "rhost", req.RHost,
		"groups", len(req.Groups), "args", req.Args, "transport", e.Transport)
	v := New(cfg, log)
	v.Stores = e.Stores
	// Connects only when enrollment is offered, and not once the module has gone: the decision
	// may have waited for a store lock long enough for the module to give up and ask the helper,
	// which offers its own enrollment.
	v.Enroll = liveEnroller{LoginEnroller: &rootsock.Client{Path: cfg.SocketPath()}, rw: rw}
	v.Claims = e.Claims
	verdict = v.Authenticate(req, conn)
	if err := conn.Done(verdict); err != nil {
		log.Error("cannot send verdict", "user", req.User, "transport", e.Transport, "err", err)
	}
	return req.User, verdict
}

// errModuleGone refuses to begin an enrollment that nobody would see.
var errModuleGone = errors.New("pam_totp.so hung up (it asked the helper)")

// liveEnroller begins an enrollment at login only while the module is still there.
type liveEnroller struct {
	LoginEnroller
	rw io.ReadWriter
}

func (l liveEnroller) BeginFor(ctx context.Context, user, name string) (rootsock.Pending, error) {
	if hungUp(l.rw) {
		return rootsock.Pending{}, errModuleGone
	}
	return l.LoginEnroller.BeginFor(ctx, user, name)
}

// hungUp reports whether the module has closed its end of rw, asking the kernel without waiting
// (poll with a zero timeout: POLLRDHUP, POLLHUP or POLLERR). A transport that is no socket
// cannot be asked and is taken to be there.
func hungUp(rw io.ReadWriter) bool {
	sc, ok := rw.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = raw.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}
