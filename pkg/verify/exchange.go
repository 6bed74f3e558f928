package verify

import (
	"errors"
	"io"
	"log/slog"
	"runtime/debug"

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
	// Stores, if set, keeps the stores' files open between exchanges (Verifier.Stores).
	Stores *store.Resident
}

// Serve runs one exchange on rw: it reads the request, loads its config, decides and sends the
// verdict, which it returns with the user ("" for both when no request came). Every failure ends
// in a denying verdict when one can still be sent; a panic is answered as SystemErr and logged
// without values (one could hold an answer).
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
	v.Enroll = &rootsock.Client{Path: cfg.SocketPath()} // connects only when enrollment is offered
	verdict = v.Authenticate(req, conn)
	if err := conn.Done(verdict); err != nil {
		log.Error("cannot send verdict", "user", req.User, "transport", e.Transport, "err", err)
	}
	return req.User, verdict
}
