// Package authlog sends the login path's log lines to syslog (facility authpriv) without ever
// slowing or failing a login: datagrams to /dev/log with a short write deadline, dropped when no
// syslog daemon listens (CI has none). Nothing is ever written to stdout or stderr, which belong
// to sshd or sudo.
package authlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Facility authpriv (10), as in syslog.h.
const facilityAuthpriv = 10 << 3

// DefaultSocket is where syslog listens on Linux.
const DefaultSocket = "/dev/log"

// writeTimeout bounds one send; a full syslog queue drops the line rather than hold a login.
const writeTimeout = 200 * time.Millisecond

// Writer sends one syslog datagram per Write.
type Writer struct {
	record   sync.Mutex // held by the handler across one record: severity, then the Write
	mu       sync.Mutex
	socket   string
	tag      string
	conn     net.Conn
	dialed   bool
	severity int
}

// NewWriter returns a writer to the syslog socket (DefaultSocket when empty) with the given tag.
func NewWriter(socket, tag string) *Writer {
	if socket == "" {
		socket = DefaultSocket
	}
	return &Writer{socket: socket, tag: tag, severity: 6}
}

// Write sends p as one message with the current severity. It never fails: a login does not
// depend on logging.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dialed {
		w.dialed = true
		if c, err := net.DialTimeout("unixgram", w.socket, writeTimeout); err == nil {
			w.conn = c
		}
	}
	if w.conn == nil {
		return len(p), nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>%s %s[%d]: ", facilityAuthpriv|w.severity, time.Now().Format(time.Stamp), w.tag, os.Getpid())
	b.Write(bytes.TrimRight(p, "\n"))
	_ = w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = w.conn.Write(b.Bytes())
	return len(p), nil
}

// Close closes the socket.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		return w.conn.Close()
	}
	return nil
}

// handler sets the syslog severity from the record level, then formats with slog's text handler.
type handler struct {
	w     *Writer
	inner slog.Handler
}

// New returns a logger that writes key=value lines to syslog authpriv, tagged tag.
// debug lowers the level to Debug.
func New(socket, tag string, debug bool) (*slog.Logger, io.Closer) {
	w := NewWriter(socket, tag)
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	inner := slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // syslog stamps the time
			}
			return a
		},
	})
	return slog.New(&handler{w: w, inner: inner}), w
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	h.w.record.Lock()
	defer h.w.record.Unlock()
	h.w.mu.Lock()
	h.w.severity = severity(r.Level)
	h.w.mu.Unlock()
	return h.inner.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{w: h.w, inner: h.inner.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{w: h.w, inner: h.inner.WithGroup(name)}
}

func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}
