package registry

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// DefaultConfigPath is where totp-registry reads its config unless told otherwise.
const DefaultConfigPath = "/etc/pam-totp/registry.conf"

// maxConfigSize bounds the config and admin token files.
const maxConfigSize = 1 << 20

// Config is the registry's config file (contrib/registry.conf.example documents every key).
type Config struct {
	Listen       string `toml:"listen"`
	TLSCert      string `toml:"tls_cert"`
	TLSKey       string `toml:"tls_key"`
	InsecureHTTP bool   `toml:"insecure_http"`
	ClientCA     string `toml:"client_ca"`
	Store        string `toml:"store"`
	KeyFile      string `toml:"key_file"`
	AdminTokens  string `toml:"admin_tokens_file"`
	Issuer       string `toml:"issuer"`
	// HistoryKeep is how many revisions of history are kept for watching nodes.
	HistoryKeep         int64         `toml:"history_keep"`
	BookmarkInterval    time.Duration `toml:"bookmark_interval"`
	StreamMax           time.Duration `toml:"stream_max"`
	SnapshotConcurrency int           `toml:"snapshot_concurrency"`
	// Enroll and Mail are the [enroll] and [mail] sections (enroll_config.go, package mail).
	Enroll EnrollConfig `toml:"enroll"`
	Mail   mail.Config  `toml:"mail"`
}

// DefaultConfig is the one defaults literal.
func DefaultConfig() Config {
	return Config{
		Listen:              "127.0.0.1:8443",
		TLSCert:             "/etc/pam-totp/registry.crt",
		TLSKey:              "/etc/pam-totp/registry-tls.key",
		Store:               "/var/lib/pam-totp-registry/registry.db",
		KeyFile:             "/etc/pam-totp/registry.keyring",
		AdminTokens:         "/etc/pam-totp/registry-admins",
		Issuer:              "pam-totp",
		HistoryKeep:         100000,
		BookmarkInterval:    10 * time.Second,
		StreamMax:           5 * time.Minute,
		SnapshotConcurrency: 4,
		Enroll:              defaultEnrollConfig(),
		Mail:                mail.DefaultConfig(),
	}
}

// LoadConfig opens path safely (not a symlink, root-owned, not writable by others) and parses it.
// Warnings (unknown keys, insecure_http) come beside a nil error.
func LoadConfig(path string) (*Config, []string, error) {
	data, err := readSafe(path, securefile.Policy)
	if err != nil {
		return nil, nil, err
	}
	c, warnings, err := ParseConfig(data)
	if err != nil {
		return nil, warnings, fmt.Errorf("config %s: %w", path, err)
	}
	return c, warnings, nil
}

// ParseConfig parses and validates a config from memory.
func ParseConfig(data []byte) (*Config, []string, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	for _, k := range md.Undecoded() {
		warnings = append(warnings, fmt.Sprintf("unknown key %q ignored", k.String()))
	}
	if err := c.Validate(); err != nil {
		return nil, warnings, err
	}
	if c.InsecureHTTP {
		warnings = append(warnings, "insecure_http = true: node credentials and secrets travel in clear text; use it for tests on 127.0.0.1 only")
	}
	return &c, warnings, nil
}

// Validate checks every value.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want host:port: %v", c.Listen, err)
	}
	if !c.InsecureHTTP && (c.TLSCert == "" || c.TLSKey == "") {
		return fmt.Errorf("tls_cert and tls_key are required (insecure_http = true turns TLS off, for tests only)")
	}
	for _, f := range []struct{ key, v string }{{"tls_cert", c.TLSCert}, {"tls_key", c.TLSKey},
		{"client_ca", c.ClientCA}, {"store", c.Store}, {"key_file", c.KeyFile}, {"admin_tokens_file", c.AdminTokens}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			return fmt.Errorf("%s %q: must be an absolute path", f.key, f.v)
		}
	}
	if c.Store == "" || c.KeyFile == "" || c.AdminTokens == "" {
		return fmt.Errorf("store, key_file and admin_tokens_file must be set")
	}
	storeDir := filepath.Clean(filepath.Dir(c.Store))
	if d := filepath.Clean(filepath.Dir(c.KeyFile)); d == storeDir || strings.HasPrefix(d, storeDir+"/") {
		return fmt.Errorf("key_file %q: must live outside the store's directory %s, so a copy of the store holds no key", c.KeyFile, storeDir)
	}
	if c.Issuer == "" || strings.ContainsAny(c.Issuer, ":\n") {
		return fmt.Errorf("issuer %q: must be non-empty without ':'", c.Issuer)
	}
	switch {
	case c.HistoryKeep < 100 || c.HistoryKeep > 1e9:
		return fmt.Errorf("history_keep %d: must be between 100 and 1000000000", c.HistoryKeep)
	case c.BookmarkInterval < time.Second || c.BookmarkInterval > 5*time.Minute:
		return fmt.Errorf("bookmark_interval %s: must be between 1s and 5m", c.BookmarkInterval)
	case c.StreamMax < 10*time.Second || c.StreamMax > 24*time.Hour:
		return fmt.Errorf("stream_max %s: must be between 10s and 24h", c.StreamMax)
	case c.StreamMax < 2*c.BookmarkInterval:
		return fmt.Errorf("stream_max %s: must be at least twice bookmark_interval", c.StreamMax)
	case c.SnapshotConcurrency < 1 || c.SnapshotConcurrency > 64:
		return fmt.Errorf("snapshot_concurrency %d: must be between 1 and 64", c.SnapshotConcurrency)
	}
	return c.validateEnroll()
}

// TLSConfig returns the server's TLS config: the certificate, TLS 1.2 or later, and, with
// client_ca set, client certificates from that CA verified when given (a node may still use its
// bearer credential instead). nil with insecure_http.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if c.InsecureHTTP {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("read client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s: no PEM certificate", c.ClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// AdminToken is one accepted admin bearer token: the admin's name (the audit actor) and the
// SHA-256 of the token.
type AdminToken struct {
	Name string
	Hash [32]byte
}

// LoadAdminTokens reads the admin tokens file (root 0600): "NAME SHA256HEX" per line, blank lines
// and '#' comments skipped.
func LoadAdminTokens(path string) ([]AdminToken, error) {
	data, err := readSafe(path, securefile.Secret)
	if err != nil {
		return nil, err
	}
	toks, err := ParseAdminTokens(data)
	if err != nil {
		return nil, fmt.Errorf("admin tokens file %s: %w", path, err)
	}
	return toks, nil
}

// ParseAdminTokens parses the admin tokens file's content.
func ParseAdminTokens(data []byte) ([]AdminToken, error) {
	var toks []AdminToken
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !validName(f[0], 64) {
			return nil, fmt.Errorf("line %d: want NAME SHA256HEX", n)
		}
		b, err := hex.DecodeString(f[1])
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("line %d: the hash must be 64 hex digits (SHA-256 of the token)", n)
		}
		var t AdminToken
		t.Name = f[0]
		copy(t.Hash[:], b)
		toks = append(toks, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return toks, nil
}

// readSafe reads a small root-owned file through securefile.
func readSafe(path string, rule securefile.Rule) ([]byte, error) {
	return securefile.ReadFile(path, rule, maxConfigSize)
}
