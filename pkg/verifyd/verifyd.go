// Package verifyd is the resident verifier: totp-syncd answers pam_totp.so on a root-only Unix
// socket ([sync] verify_socket, default /run/pam-totp/verify.sock) with the frames of
// docs/protocol.md, so that a login costs a connection instead of a process start. Each
// connection is one exchange decided by verify.Exchange, the code the exec'd helper runs too.
//
// Why in totp-syncd and not a daemon of its own: it already runs as root on every node, keeps
// the node's store fed and serves the enrollment socket; the cluster-wide claims of codes and
// failures (issue 9) need its registry connection. A verifier that is down, stopped or slow
// costs a login nothing but the module's connect bound: the module then execs the helper.
//
// Abandoned logins: a module that got no first frame within its connect_ms (the daemon stopped
// or slow) closes the connection and asks the helper. A request read after that decides nothing
// (verify.Abandoned): it is logged as abandoned, not answered, and stays out of the metrics.
//
// Trust: the socket is root 0600 in a root 0700 directory (made by rootsock.Listen); the
// daemon drops a peer that is not uid 0 (SO_PEERCRED) unanswered, and answers at most
// MaxExchanges at a time (more connections are closed at once: those logins use the helper).
package verifyd

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/verify"
)

// Bounds of an exchange.
const (
	// MaxExchanges is how many logins the daemon answers at once.
	MaxExchanges = 256
	// ExchangeTimeout ends an exchange that is still open (a user who never answers the
	// prompt): longer than sshd's LoginGraceTime default; the module's own timeout= is shorter.
	ExchangeTimeout = 5 * time.Minute
)

// Serve answers connections on ln until ctx ends; it closes ln. log is the daemon's log (peers
// refused, the limit reached); the logins themselves go to ex's auth log. observe, if not nil,
// sees each answered login's verdict and duration (metrics).
func Serve(ctx context.Context, ln *net.UnixListener, ex verify.Exchange, log *slog.Logger,
	observe func(verdict string, d time.Duration)) error {
	ex.Transport = "socket"
	slots := make(chan struct{}, MaxExchanges)
	return rootsock.Accept(ctx, ln, "the verifier socket", func(conn *net.UnixConn) {
		select {
		case slots <- struct{}{}:
		default:
			log.Warn("resident verifier busy: a login goes to the helper", "limit", MaxExchanges)
			conn.Close()
			return
		}
		go func() {
			defer func() { <-slots }()
			defer conn.Close()
			if uid, err := rootsock.PeerUID(conn); err != nil || uid != 0 {
				log.Warn("verifier socket: peer refused: not root", "uid", uid, "err", err)
				return
			}
			conn.SetDeadline(time.Now().Add(ExchangeTimeout))
			start := time.Now()
			user, verdict := ex.Serve(conn)
			took := time.Since(start)
			switch verdict {
			case "": // closed before a request: a probe
			case verify.Abandoned:
				// Read late (the daemon was stopped or slow): the module had given up after
				// connect_ms and a helper decided. Not a login of this verifier, nor in its metrics.
				log.Warn("login abandoned: pam_totp.so had given up waiting and asked the helper; nothing decided",
					"user", user)
			default:
				log.Debug("login answered by the resident verifier", "user", user, "verdict", verdict,
					"took", took.Round(time.Microsecond))
				if observe != nil {
					observe(string(verdict), took)
				}
			}
		}()
	})
}
