package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	netmail "net/mail"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// StartTLS modes.
const (
	StartTLSAuto   = "auto"
	StartTLSAlways = "always"
	StartTLSNever  = "never"
)

// Sentinel errors.
var (
	// ErrHeader is a header value (recipient, subject) with a line break or an invalid address.
	ErrHeader = errors.New("invalid header value")
	// ErrNoStartTLS is a relay that does not offer STARTTLS with starttls = "always".
	ErrNoStartTLS = errors.New("relay does not offer STARTTLS")
)

// Config is the [mail] section of a config file.
type Config struct {
	// Host is the relay's host:port; "" sends nothing and only logs each notice.
	Host string `toml:"host"`
	// From is the sender address of every notice.
	From string `toml:"from"`
	// Contact is who a user should tell when a change was not theirs (text in the notices).
	Contact      string        `toml:"contact"`
	StartTLS     string        `toml:"starttls"`
	Username     string        `toml:"username"`
	PasswordFile string        `toml:"password_file"`
	Timeout      time.Duration `toml:"timeout"`
	Queue        int           `toml:"queue"`
	Retries      int           `toml:"retries"`
	RetryDelay   time.Duration `toml:"retry_delay"`
}

// DefaultConfig is the one defaults literal of [mail].
func DefaultConfig() Config {
	return Config{
		From:       "pam-totp@localhost",
		Contact:    "your site's helpdesk",
		StartTLS:   StartTLSAuto,
		Timeout:    30 * time.Second,
		Queue:      1000,
		Retries:    3,
		RetryDelay: time.Minute,
	}
}

// Validate checks every value of [mail].
func (c *Config) Validate() error {
	if c.Host != "" {
		if h, p, err := net.SplitHostPort(c.Host); err != nil || h == "" || p == "" {
			return fmt.Errorf("mail host %q: want host:port", c.Host)
		}
	}
	if a, err := netmail.ParseAddress(c.From); err != nil || a.Name != "" || strings.ContainsAny(c.From, "\r\n") {
		return fmt.Errorf("mail from %q: want one bare address like totp@example.org", c.From)
	}
	if c.Contact == "" || strings.ContainsAny(c.Contact, "\r\n") || len(c.Contact) > 256 {
		return fmt.Errorf("mail contact: want one line of 1 to 256 bytes")
	}
	switch c.StartTLS {
	case StartTLSAuto, StartTLSAlways, StartTLSNever:
	default:
		return fmt.Errorf("mail starttls %q: want auto, always or never", c.StartTLS)
	}
	if c.Username != "" {
		if c.PasswordFile == "" {
			return fmt.Errorf("mail username needs password_file")
		}
		if c.StartTLS == StartTLSNever {
			return fmt.Errorf("mail username with starttls = never would send the password in clear text")
		}
	}
	if c.PasswordFile != "" && !filepath.IsAbs(c.PasswordFile) {
		return fmt.Errorf("mail password_file %q: must be an absolute path", c.PasswordFile)
	}
	switch {
	case c.Timeout < time.Second || c.Timeout > 5*time.Minute:
		return fmt.Errorf("mail timeout %s: must be between 1s and 5m", c.Timeout)
	case c.Queue < 1 || c.Queue > 100000:
		return fmt.Errorf("mail queue %d: must be between 1 and 100000", c.Queue)
	case c.Retries < 0 || c.Retries > 10:
		return fmt.Errorf("mail retries %d: must be between 0 and 10", c.Retries)
	case c.RetryDelay < time.Second || c.RetryDelay > time.Hour:
		return fmt.Errorf("mail retry_delay %s: must be between 1s and 1h", c.RetryDelay)
	}
	return nil
}

// Message is one plain-text notice.
type Message struct {
	To      string
	Subject string
	Body    string
}

// check refuses header injection and a recipient that is not one bare address.
func (m Message) check() error {
	if strings.ContainsAny(m.To+m.Subject, "\r\n") {
		return fmt.Errorf("recipient or subject with a line break: %w", ErrHeader)
	}
	if a, err := netmail.ParseAddress(m.To); err != nil || a.Address != m.To {
		return fmt.Errorf("recipient is not one bare address: %w", ErrHeader)
	}
	return nil
}

// Options are what a Sender is built from besides its Config.
type Options struct {
	Logger *slog.Logger
	// Now and Rand default to the real clock (clock.Now) and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
	// RootCAs verifies the relay's certificate after STARTTLS; nil is the system pool.
	RootCAs *x509.CertPool
}

// Stats counts outcomes since the Sender started.
type Stats struct {
	Sent, Failed, Dropped, Logged int64
}

// Sender delivers messages in the background. The zero value is not usable; call New.
type Sender struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	roots    *x509.CertPool
	password string
	helo     string

	q                             chan Message
	pending                       atomic.Int64 // queued or being delivered
	sent, failed, dropped, logged atomic.Int64

	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc
	done   chan struct{}
}

// New validates cfg, reads the password file, and starts the delivery goroutine. Call Close.
func New(cfg Config, o Options) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg, log: o.Logger, now: o.Now, rand: o.Rand, roots: o.RootCAs,
		q: make(chan Message, cfg.Queue), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = clock.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if cfg.PasswordFile != "" {
		b, err := securefile.ReadFile(cfg.PasswordFile, securefile.Secret, 4096)
		if err != nil {
			return nil, fmt.Errorf("mail password_file: %w", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
	}
	s.helo = "localhost"
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		s.helo = h
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(ctx)
	return s, nil
}

// Send queues m and returns at once. It reports whether m was queued (or, with no host,
// logged); a full queue or an invalid message is logged and counted, never an error.
func (s *Sender) Send(m Message) bool {
	if err := m.check(); err != nil {
		s.failed.Add(1)
		s.log.Error("mail notice refused", "subject", m.Subject, "err", err)
		return false
	}
	if s.cfg.Host == "" {
		s.logged.Add(1)
		s.log.Info("mail notice not sent: no [mail] host", "to", m.To, "subject", m.Subject)
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.dropped.Add(1)
		s.log.Warn("mail notice dropped: sender closed", "to", m.To, "subject", m.Subject)
		return false
	}
	s.pending.Add(1)
	select {
	case s.q <- m:
		return true
	default:
		s.pending.Add(-1)
		s.dropped.Add(1)
		s.log.Warn("mail notice dropped: queue full", "to", m.To, "subject", m.Subject, "queue", s.cfg.Queue)
		return false
	}
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(), Logged: s.logged.Load()}
}

// Flush waits until every queued message was delivered or given up, or ctx ends.
func (s *Sender) Flush(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush mail queue: %d messages left: %w", s.pending.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close stops delivery; messages still queued are dropped (and logged). Flush first to wait
// for them.
func (s *Sender) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	if n := len(s.q); n > 0 {
		s.dropped.Add(int64(n))
		s.log.Warn("mail notices dropped at shutdown", "count", n)
	}
}

func (s *Sender) run(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.q:
			s.deliverWithRetries(ctx, m)
			s.pending.Add(-1)
		}
	}
}

func (s *Sender) deliverWithRetries(ctx context.Context, m Message) {
	for attempt := 0; ; attempt++ {
		err := s.deliver(ctx, m)
		if err == nil {
			s.sent.Add(1)
			s.log.Info("mail notice sent", "to", m.To, "subject", m.Subject, "relay", s.cfg.Host)
			return
		}
		if attempt >= s.cfg.Retries || ctx.Err() != nil {
			s.failed.Add(1)
			s.log.Error("mail notice failed", "to", m.To, "subject", m.Subject, "relay", s.cfg.Host,
				"attempts", attempt+1, "err", err)
			return
		}
		s.log.Warn("mail notice: relay failed; retrying", "to", m.To, "relay", s.cfg.Host, "attempt", attempt+1,
			"retry_in", s.cfg.RetryDelay, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.RetryDelay):
		}
	}
}

// deliver runs one SMTP session with a deadline on the connection.
func (s *Sender) deliver(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Host)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	host, _, _ := net.SplitHostPort(s.cfg.Host)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(s.helo); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if s.cfg.StartTLS != StartTLSNever {
		if ok, _ := c.Extension("STARTTLS"); ok {
			tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: s.roots}
			if err := c.StartTLS(tc); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		} else if s.cfg.StartTLS == StartTLSAlways {
			return fmt.Errorf("%w (starttls = always)", ErrNoStartTLS)
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.password, host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(s.cfg.From); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	msg, err := s.format(m)
	if err != nil {
		w.Close()
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of message: %w", err)
	}
	return c.Quit()
}

// format renders m with its headers; net/smtp's data writer dot-stuffs and ends lines with CRLF.
func (s *Sender) format(m Message) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, id); err != nil {
		return nil, fmt.Errorf("random message id: %w", err)
	}
	domain := "localhost"
	if i := strings.LastIndexByte(s.cfg.From, '@'); i >= 0 {
		domain = s.cfg.From[i+1:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\n", s.cfg.From)
	fmt.Fprintf(&b, "To: %s\n", m.To)
	fmt.Fprintf(&b, "Subject: %s\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Date: %s\n", s.now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\n", hex.EncodeToString(id), domain)
	b.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n")
	b.WriteString("Auto-Submitted: auto-generated\n\n")
	body := strings.ReplaceAll(m.Body, "\r\n", "\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\n") {
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}
