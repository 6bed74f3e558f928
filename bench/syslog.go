//go:build linux

package main

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// syslogSink stands in for journald or rsyslog when nothing listens on /dev/log: it reads and
// drops every datagram. Without it, glibc's syslog() falls back to writing /dev/console for
// modules that open the log with LOG_CONS (pam_google_authenticator does, for every login), and
// that write costs milliseconds: a cost no login node with a syslog daemon pays.
type syslogSink struct {
	conn     *net.UnixConn
	path     string
	messages atomic.Int64

	mu     sync.Mutex
	errors []string // pam-totp's messages at severity err or worse, for the row notes
}

// maxKept bounds the error lines kept between two takeErrors calls.
const maxKept = 20

// startSyslogSink listens on path unless a syslog daemon already does. A socket left behind by
// an earlier run (nobody accepts on it) is replaced. It returns nil when a daemon is there.
func startSyslogSink(path string) (*syslogSink, error) {
	if c, err := net.Dial("unixgram", path); err == nil {
		c.Close()
		return nil, nil // a daemon listens
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		if fi, serr := os.Lstat(path); serr == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(path, 0o666)
	s := &syslogSink{conn: conn, path: path}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			s.messages.Add(1)
			s.keep(string(buf[:n]))
		}
	}()
	return s, nil
}

// Close stops listening and removes the socket.
func (s *syslogSink) Close() error {
	if s == nil {
		return nil
	}
	err := s.conn.Close()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// count is how many messages arrived so far (0 for a nil sink).
func (s *syslogSink) count() int64 {
	if s == nil {
		return 0
	}
	return s.messages.Load()
}

// keep remembers msg when it is pam-totp's (helper or module) at severity err (3) or worse.
func (s *syslogSink) keep(msg string) {
	end := strings.IndexByte(msg, '>')
	if !strings.HasPrefix(msg, "<") || end < 0 || !strings.Contains(msg, "pam-totp") &&
		!strings.Contains(msg, "pam_totp") {
		return
	}
	pri, err := strconv.Atoi(msg[1:end])
	if err != nil || pri%8 > 3 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errors) < maxKept {
		s.errors = append(s.errors, strings.TrimSpace(msg[end+1:]))
	}
}

// takeErrors returns the error lines kept since the last call and forgets them.
func (s *syslogSink) takeErrors() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.errors
	s.errors = nil
	return e
}
