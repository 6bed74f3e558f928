package mail

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/mail/mailtest"
)

// tlsFiles writes a throwaway CA's server certificate for 127.0.0.1 and returns the pool.
func tlsFiles(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key1.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key1)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return cert, key, pool
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func flush(t *testing.T, s *Sender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSendToRealRelay(t *testing.T) {
	t.Parallel()
	cert, key, pool := tlsFiles(t)
	pwFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		relayArgs []string
		cfg       func(*Config)
		wantSent  bool
		wantTLS   string
		wantAuth  string
	}{
		{name: "plain relay, starttls auto", wantSent: true, wantTLS: "no", wantAuth: "no"},
		{name: "starttls offered and used", relayArgs: []string{"--tls", cert, key}, wantSent: true, wantTLS: "yes", wantAuth: "no"},
		{name: "starttls never", relayArgs: []string{"--tls", cert, key},
			cfg: func(c *Config) { c.StartTLS = StartTLSNever }, wantSent: true, wantTLS: "no", wantAuth: "no"},
		{name: "starttls always but not offered", cfg: func(c *Config) { c.StartTLS = StartTLSAlways }},
		{name: "auth over starttls", relayArgs: []string{"--tls", cert, key, "--auth", "totp", "s3cret"},
			cfg: func(c *Config) { c.Username, c.PasswordFile = "totp", pwFile }, wantSent: true, wantTLS: "yes", wantAuth: "yes"},
		{name: "auth with a wrong password", relayArgs: []string{"--tls", cert, key, "--auth", "totp", "other"},
			cfg: func(c *Config) { c.Username, c.PasswordFile = "totp", pwFile }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mailtest.Start(t, tt.relayArgs...)
			cfg := DefaultConfig()
			cfg.Host, cfg.From, cfg.Retries, cfg.Timeout = r.Addr, "totp@example.org", 0, 10*time.Second
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s, err := New(cfg, Options{Logger: quietLog(), RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := Message{To: "ann@example.org", Subject: "Token added ✓", Body: "Line one.\n.dot line\nBye."}
			if !s.Send(m) {
				t.Fatalf("Send(%+v) = false, want queued", m)
			}
			flush(t, s)
			msgs, st := r.Messages(t), s.Stats()
			if !tt.wantSent {
				if len(msgs) != 0 || st.Failed != 1 || st.Sent != 0 {
					t.Errorf("%d messages stored, stats %+v; want none stored and 1 failed", len(msgs), st)
				}
				return
			}
			if len(msgs) != 1 || st.Sent != 1 {
				t.Fatalf("%d messages stored, stats %+v; want exactly 1 sent", len(msgs), st)
			}
			got := msgs[0]
			for _, want := range []string{"X-Test-From: totp@example.org", "X-Test-To: ann@example.org",
				"X-Test-TLS: " + tt.wantTLS, "X-Test-Auth: " + tt.wantAuth, "\nFrom: totp@example.org\r\n",
				"\nTo: ann@example.org\r\n", "\nSubject: =?utf-8?q?Token_added_=E2=9C=93?=\r\n", "\nDate: ",
				"\nMessage-ID: <", "@example.org>\r\n", "Content-Type: text/plain; charset=utf-8",
				"\r\n\r\nLine one.\r\n.dot line\r\nBye.\r\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("stored message lacks %q:\n%s", want, got)
				}
			}
		})
	}
}

func TestFailingRelayNeverBlocks(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := DefaultConfig()
	cfg.Host, cfg.Retries, cfg.RetryDelay, cfg.Queue = addr, 1, time.Second, 2
	s, err := New(cfg, Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	var queued int
	for range 5 {
		if s.Send(Message{To: "ann@example.org", Subject: "x", Body: "y"}) {
			queued++
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("5 Sends to a dead relay took %s, want no blocking", d)
	}
	flush(t, s)
	st := s.Stats()
	if st.Sent != 0 || st.Failed != int64(queued) || st.Dropped != int64(5-queued) || st.Dropped == 0 {
		t.Errorf("stats %+v after %d queued of 5 with a queue of 2; want all queued failed, the rest dropped", st, queued)
	}
}

func TestSendRefusesAndLogs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		host string
		m    Message
		want bool
		st   Stats
	}{
		{name: "header injection in subject", host: "127.0.0.1:1", m: Message{To: "a@b.c", Subject: "x\r\nBcc: e@f.g"}, st: Stats{Failed: 1}},
		{name: "two recipients", host: "127.0.0.1:1", m: Message{To: "a@b.c, d@e.f", Subject: "x"}, st: Stats{Failed: 1}},
		{name: "no host logs only", m: Message{To: "a@b.c", Subject: "x"}, want: true, st: Stats{Logged: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Host = tt.host
			s, err := New(cfg, Options{Logger: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Send(tt.m); got != tt.want || s.Stats() != tt.st {
				t.Errorf("Send(%+v) = %v, stats %+v; want %v, %+v", tt.m, got, s.Stats(), tt.want, tt.st)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "host without port", edit: func(c *Config) { c.Host = "smtp.example.org" }, wantErr: "host:port"},
		{name: "from with a name", edit: func(c *Config) { c.From = "TOTP <t@example.org>" }, wantErr: "bare address"},
		{name: "starttls value", edit: func(c *Config) { c.StartTLS = "yes" }, wantErr: "starttls"},
		{name: "password in clear", edit: func(c *Config) { c.Username, c.PasswordFile, c.StartTLS = "u", "/p", StartTLSNever }, wantErr: "clear text"},
		{name: "username without password", edit: func(c *Config) { c.Username = "u" }, wantErr: "password_file"},
		{name: "timeout", edit: func(c *Config) { c.Timeout = time.Millisecond }, wantErr: "timeout"},
		{name: "contact with newline", edit: func(c *Config) { c.Contact = "a\nb" }, wantErr: "contact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
