// Package rootsock is totp-syncd's root-only Unix socket ([sync] socket, by default
// totp-syncd.sock in the store directory; docs/enrollment.md, "The root socket"): the way the PAM
// helper asks the daemon to enroll a user at login, without linking D-Bus, QR or HTTP code. A
// later resident verifier is meant to answer on the same socket with more operations.
//
// Protocol: one connection per request. The client writes one JSON object and a newline
// (Request), the daemon answers with one JSON object and a newline (Answer) and closes. Both
// sides cap a message at MaxMessage bytes and bound the exchange with a deadline.
//
// Trust: the socket is root 0600 in a root 0700 directory. The client (Client) refuses a
// directory or socket that is not owned by root or that group or others may open; the daemon
// (Serve) checks with SO_PEERCRED that its peer is uid 0 and drops anyone else unanswered.
// Every failure reaches the caller as an error: the helper then goes on as if enrollment were not
// offered (fail closed: it grants nothing).
//
// Secrets: the answers carry the otpauth URI and backup codes, which never appear in an error or
// a log line of this package.
package rootsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FileName is the socket's name in the store directory when [sync] socket is not set.
const FileName = "totp-syncd.sock"

// MaxMessage bounds a request or an answer, newline included.
const MaxMessage = 64 << 10

// Operations of a Request.
const (
	OpBeginEnrollmentFor  = "begin_enrollment_for"  // user, name -> id, uri, qr, expires
	OpFinishEnrollmentFor = "finish_enrollment_for" // user, id, code -> status, skew_s, backup_codes
)

// Request is what the client sends.
type Request struct {
	Op   string `json:"op"`
	User string `json:"user"`
	Name string `json:"name,omitempty"` // begin: the token's name ("" the default)
	ID   string `json:"id,omitempty"`   // finish: the pending token
	Code string `json:"code,omitempty"` // finish: the first code (a secret)
}

// Answer is what the daemon sends back: Error, or the fields of the operation.
type Answer struct {
	Error *Error `json:"error,omitempty"`
	Pending
	Finished
}

// Pending is a pending token begun on behalf of a user. URI holds the secret; QR is the URI drawn
// for a terminal by the daemon (plain text, no escapes; "" when it does not fit).
type Pending struct {
	ID      string `json:"id,omitempty"`
	URI     string `json:"uri,omitempty"`
	QR      string `json:"qr,omitempty"`
	Expires int64  `json:"expires,omitempty"` // unix seconds
}

// Finished is the answer to a first code. BackupCodes (first token only) are secrets.
type Finished struct {
	Status      string   `json:"status,omitempty"` // active, wrong_code, clock_skew, expired
	SkewS       int      `json:"skew_s,omitempty"`
	BackupCodes []string `json:"backup_codes,omitempty"`
}

// Error is the daemon's refusal: Name is the error name of the D-Bus contract
// (io.github.pamtotp.Sync1.Error.*), Message one plain sentence (not yet cleaned of control
// characters: callers that print it clean it).
type Error struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// Errors of the client, before or instead of an answer.
var (
	ErrUnsafe   = errors.New("the socket is not root-only") // owner or mode of the socket or its directory
	ErrTooLarge = errors.New("message too large")
)

// Client calls the daemon on the socket at Path.
type Client struct {
	Path string
}

// BeginFor starts a first token named name for user.
func (c *Client) BeginFor(ctx context.Context, user, name string) (Pending, error) {
	a, err := c.do(ctx, Request{Op: OpBeginEnrollmentFor, User: user, Name: name})
	return a.Pending, err
}

// FinishFor checks the first code of user's pending token id.
func (c *Client) FinishFor(ctx context.Context, user, id, code string) (Finished, error) {
	a, err := c.do(ctx, Request{Op: OpFinishEnrollmentFor, User: user, ID: id, Code: code})
	return a.Finished, err
}

// do sends req and reads the answer within ctx.
func (c *Client) do(ctx context.Context, req Request) (Answer, error) {
	if err := CheckPath(c.Path); err != nil {
		return Answer{}, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return Answer{}, fmt.Errorf("connect to totp-syncd at %s: %w", c.Path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := write(conn, req); err != nil {
		return Answer{}, fmt.Errorf("%s: %w", req.Op, err)
	}
	var a Answer
	if err := read(conn, &a); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return Answer{}, fmt.Errorf("%s: %w", req.Op, err)
	}
	if a.Error != nil {
		return Answer{}, a.Error
	}
	return a, nil
}

// CheckPath checks that path is a socket owned by root, in a directory owned by root that
// neither group nor others may write to or search, neither followed through a symbolic link.
func CheckPath(path string) error {
	dir := filepath.Dir(path)
	for _, c := range []struct {
		p    string
		typ  os.FileMode
		deny os.FileMode
	}{{dir, os.ModeDir, 0o077}, {path, os.ModeSocket, 0o077}} {
		fi, err := os.Lstat(c.p)
		if err != nil {
			return fmt.Errorf("totp-syncd's socket: %w", err)
		}
		uid := uint32(1<<32 - 1)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = st.Uid
		}
		if fi.Mode().Type() != c.typ || fi.Mode().Perm()&c.deny != 0 || uid != 0 {
			return fmt.Errorf("%s (owner uid %d, mode %v): %w", c.p, uid, fi.Mode(), ErrUnsafe)
		}
	}
	return nil
}

// write sends v as one JSON line.
func write(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b)+1 > MaxMessage {
		return ErrTooLarge
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// read reads one JSON line of at most MaxMessage bytes into v.
func read(r io.Reader, v any) error {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxMessage), 4096)
	line, err := br.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) {
		var more []byte
		more, err = br.ReadSlice('\n')
		line = append(append([]byte(nil), line...), more...)
	}
	switch {
	case errors.Is(err, io.EOF) && len(line) >= MaxMessage:
		return ErrTooLarge
	case err != nil:
		return fmt.Errorf("read: %w", err)
	}
	return json.Unmarshal(line, v)
}

// Handler answers the operations; its errors are *Error for a refusal meant for the user, any
// other error is answered as Error.Unavailable.
type Handler interface {
	BeginEnrollmentFor(ctx context.Context, user, name string) (Pending, error)
	FinishEnrollmentFor(ctx context.Context, user, id, code string) (Finished, error)
}

// Error names the socket itself answers with: syncbus.ErrUnavailable and syncbus.ErrInvalid,
// written out because this package does not link godbus (a test of busapi checks they agree).
const (
	ErrUnavailableName = "io.github.pamtotp.Sync1.Error.Unavailable"
	ErrInvalidName     = "io.github.pamtotp.Sync1.Error.Invalid"
)

// Listen makes the socket at path: its directory root 0700 (made if missing, refused if it is
// anything else), a stale socket of an earlier run removed, the new one 0600.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale socket %s: %w", path, err)
		}
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := CheckPath(path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve answers connections on ln with h until ctx ends, each within timeout; it closes ln.
func Serve(ctx context.Context, ln *net.UnixListener, h Handler, timeout time.Duration, log *slog.Logger) error {
	return Accept(ctx, ln, "the root socket", func(conn *net.UnixConn) { go serveConn(ctx, conn, h, timeout, log) })
}

// Accept hands every connection on ln to handle until ctx ends (nil) or accepting fails (an
// error naming what); it closes ln. handle must not block for long: it starts the work.
func Accept(ctx context.Context, ln *net.UnixListener, what string, handle func(*net.UnixConn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept on %s: %w", what, err)
		}
		handle(conn)
	}
}

// PeerUID is the uid of the process at the other end of conn (SO_PEERCRED).
func PeerUID(conn *net.UnixConn) (uint32, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

func serveConn(ctx context.Context, conn *net.UnixConn, h Handler, timeout time.Duration, log *slog.Logger) {
	defer conn.Close()
	uid, err := PeerUID(conn)
	if err != nil || uid != 0 {
		log.Warn("root socket: peer refused: not root", "uid", uid, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.SetDeadline(time.Now().Add(timeout))
	var req Request
	if err := read(conn, &req); err != nil {
		log.Warn("root socket: unreadable request", "err", err)
		return
	}
	var a Answer
	switch req.Op {
	case OpBeginEnrollmentFor:
		a.Pending, err = h.BeginEnrollmentFor(ctx, req.User, req.Name)
	case OpFinishEnrollmentFor:
		a.Finished, err = h.FinishEnrollmentFor(ctx, req.User, req.ID, req.Code)
	default:
		err = &Error{Name: ErrInvalidName, Message: "unknown operation"}
	}
	if err != nil {
		var re *Error
		if !errors.As(err, &re) {
			log.Warn("root socket: "+req.Op+" failed", "user", req.User, "err", err)
			re = &Error{Name: ErrUnavailableName, Message: "totp-syncd could not do this now; try again"}
		}
		a = Answer{Error: re}
	}
	if err := write(conn, a); err != nil {
		log.Warn("root socket: answer not sent", "op", req.Op, "err", err)
	}
}
