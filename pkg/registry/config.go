package registry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pam-totp/pam-totp/pkg/confkey"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/portal"
	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// maxConfigSize bounds the config and admin token files.
const maxConfigSize = 1 << 20

// Config is the registry's config file (contrib/registry.conf.example documents every key).
type Config struct {
	Listen       string `toml:"listen"`
	TLSCert      string `toml:"tls_cert"`
	TLSKey       string `toml:"tls_key"`
	InsecureHTTP bool   `toml:"insecure_http"`
	ClientCA     string `toml:"client_ca"`
	// Store is `store = "PATH"` (bbolt, the default) or a [store] section (StoreConfig); a
	// pointer, as one key that is a string or a section.
	Store       *StoreConfig `toml:"store"`
	KeyFile     string       `toml:"key_file"`
	AdminTokens string       `toml:"admin_tokens_file"`
	Issuer      string       `toml:"issuer"`
	// HistoryKeep is how many revisions of history are kept for watching nodes.
	HistoryKeep         int64         `toml:"history_keep"`
	BookmarkInterval    time.Duration `toml:"bookmark_interval"`
	StreamMax           time.Duration `toml:"stream_max"`
	SnapshotConcurrency int           `toml:"snapshot_concurrency"`
	// MetricsListen is the local address of the Prometheus metrics (empty: off).
	MetricsListen string `toml:"metrics_listen"`
	// HTTP is the [http] section: the server's timeouts and connection limit.
	HTTP HTTPConfig `toml:"http"`
	// Enroll and Mail are the [enroll] and [mail] sections (enroll_config.go, package mail).
	Enroll EnrollConfig `toml:"enroll"`
	Mail   mail.Config  `toml:"mail"`
	// Portal is the [portal] section: the web self-service portal (package portal).
	Portal portal.Config `toml:"portal"`

	// Unknown are the keys the file sets that mean nothing here: warnings at load, errors for
	// --check-config (confkey.Strict).
	Unknown confkey.Keys `toml:"-"`
}

// DefaultConfig is the one defaults literal.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8443",
		TLSCert: paths.Conf("registry.crt"),
		TLSKey:  paths.Conf("registry-tls.key"),
		Store: &StoreConfig{Backend: BackendBbolt, Path: filepath.Join(paths.RegistryStateDir(), "registry.db"),
			Prefix: "/pam-totp/registry/", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		KeyFile:             paths.Conf("registry.keyring"),
		AdminTokens:         paths.Conf("registry-admins"),
		Issuer:              "pam-totp",
		HistoryKeep:         100000,
		BookmarkInterval:    10 * time.Second,
		StreamMax:           5 * time.Minute,
		SnapshotConcurrency: 4,
		HTTP: HTTPConfig{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, MaxConns: 1000},
		Enroll: defaultEnrollConfig(),
		Mail:   mail.DefaultConfig(),
		Portal: portal.DefaultConfig(),
	}
}

// LoadConfig opens path safely (not a symlink, root-owned, not writable by others) and parses it.
// Warnings (unknown keys, insecure_http) come beside a nil error.
func LoadConfig(path string) (*Config, []string, error) {
	data, err := readSafe(path, securefile.Policy)
	if err != nil {
		return nil, nil, err
	}
	c, warnings, err := parseConfig(data, path)
	if err != nil {
		return nil, warnings, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := c.Store.TLSConfig(); err != nil { // so that --check-config reads them too
		return nil, warnings, fmt.Errorf("config %s: %w", path, err)
	}
	return c, warnings, nil
}

// configKeys are the valid keys of each table; [store] decodes itself (StoreConfig.UnmarshalTOML).
var configKeys = func() confkey.Names {
	n := confkey.NamesOf(Config{})
	n["store"] = storeKeys
	return n
}()

// ParseConfig parses and validates a config from memory.
func ParseConfig(data []byte) (*Config, []string, error) { return parseConfig(data, "") }

// parseConfig is ParseConfig of the file named file ("" in memory), for the unknown keys' positions.
func parseConfig(data []byte, file string) (*Config, []string, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return nil, nil, err
	}
	undecoded := md.Undecoded()
	for _, k := range c.Store.unknown {
		undecoded = append(undecoded, toml.Key{"store", k})
	}
	c.Unknown = confkey.Find(data, undecoded, configKeys, nil)
	c.Unknown.InFile(file)
	warnings := c.Unknown.Warnings()
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
		{"client_ca", c.ClientCA}, {"key_file", c.KeyFile}, {"admin_tokens_file", c.AdminTokens}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			return fmt.Errorf("%s %q: must be an absolute path", f.key, f.v)
		}
	}
	if c.KeyFile == "" || c.AdminTokens == "" {
		return fmt.Errorf("key_file and admin_tokens_file must be set")
	}
	if c.Store == nil {
		return fmt.Errorf("store must be set")
	}
	if err := c.Store.validate(); err != nil {
		return err
	}
	if c.Store.Backend == BackendBbolt {
		storeDir := filepath.Clean(filepath.Dir(c.Store.Path))
		if d := filepath.Clean(filepath.Dir(c.KeyFile)); d == storeDir || strings.HasPrefix(d, storeDir+"/") {
			return fmt.Errorf("key_file %q: must live outside the store's directory %s, so a copy of the store holds no key", c.KeyFile, storeDir)
		}
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
	if c.MetricsListen != "" {
		host, _, err := net.SplitHostPort(c.MetricsListen)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("metrics_listen %q: want a loopback address with a port (127.0.0.1:9xxx); the metrics have no authentication", c.MetricsListen)
		}
	}
	if err := c.HTTP.validate(); err != nil {
		return err
	}
	if err := c.Portal.Validate(); err != nil {
		return err
	}
	if c.Portal.Enabled && c.InsecureHTTP {
		return fmt.Errorf("portal enabled needs TLS (its cookies are Secure): set tls_cert and tls_key, not insecure_http")
	}
	if c.Portal.Enabled && c.Portal.Has(portal.SignInMail) && c.Mail.Host == "" {
		return fmt.Errorf("portal sign_in \"mail\" needs [mail] host: sign-in codes travel by mail")
	}
	return c.validateEnroll()
}

// HTTPConfig bounds what a client can hold of the server: slow or silent clients are cut off
// after the timeouts, and at most MaxConns connections are open (more wait in the kernel's
// accept queue until one closes). The node sync streams (snapshot and watch) outlive
// WriteTimeout: their handlers set their own write deadlines.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	ReadTimeout       time.Duration `toml:"read_timeout"`
	WriteTimeout      time.Duration `toml:"write_timeout"`
	IdleTimeout       time.Duration `toml:"idle_timeout"`
	MaxHeaderBytes    int           `toml:"max_header_bytes"`
	MaxConns          int           `toml:"max_conns"`
}

func (h *HTTPConfig) validate() error {
	for _, d := range []struct {
		key    string
		v, min time.Duration
	}{{"read_header_timeout", h.ReadHeaderTimeout, 100 * time.Millisecond}, {"read_timeout", h.ReadTimeout, time.Second},
		{"write_timeout", h.WriteTimeout, time.Second}, {"idle_timeout", h.IdleTimeout, time.Second}} {
		if d.v < d.min || d.v > time.Hour {
			return fmt.Errorf("http.%s %s: must be between %s and 1h", d.key, d.v, d.min)
		}
	}
	switch {
	case h.ReadTimeout < h.ReadHeaderTimeout:
		return fmt.Errorf("http.read_timeout %s: must be at least read_header_timeout %s", h.ReadTimeout, h.ReadHeaderTimeout)
	case h.MaxHeaderBytes < 4<<10 || h.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("http.max_header_bytes %d: must be between 4096 and 1048576", h.MaxHeaderBytes)
	case h.MaxConns < 2 || h.MaxConns > 1000000:
		return fmt.Errorf("http.max_conns %d: must be between 2 and 1000000", h.MaxConns)
	}
	return nil
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

// Store backends.
const (
	BackendBbolt = "bbolt"
	BackendEtcd  = "etcd"
)

// StoreConfig is where the registry keeps its data. `store = "PATH"` is bbolt at PATH; a [store]
// section chooses the backend:
//
//	[store]
//	backend = "etcd"                 # or "bbolt" (with path = "...")
//	endpoints = ["https://etcd1:2379", "https://etcd2:2379", "https://etcd3:2379"]
//	prefix = "/pam-totp/registry/"   # several registries can share one etcd under their prefixes
//	dial_timeout = "5s"
//	request_timeout = "5s"           # an etcd without quorum fails a request after this
//	ca = "/etc/pam-totp/etcd-ca.crt" # client TLS: the etcd CA, and a client certificate
//	cert = "/etc/pam-totp/etcd-client.crt"
//	key = "/etc/pam-totp/etcd-client.key"
//
// etcd over plain http:// is allowed on loopback addresses only (tests, a local proxy).
type StoreConfig struct {
	Backend        string
	Path           string
	Endpoints      []string
	Prefix         string
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	CA, Cert, Key  string

	unknown []string // keys of the [store] section that mean nothing
}

// storeKeys are the keys of a [store] section.
var storeKeys = []string{"backend", "path", "prefix", "ca", "cert", "key", "dial_timeout", "request_timeout", "endpoints"}

// UnmarshalTOML takes a path (bbolt) or a [store] section.
func (s *StoreConfig) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		s.Backend, s.Path = BackendBbolt, v
		return nil
	case map[string]any:
		for k, x := range v {
			var err error
			switch k {
			case "backend":
				err = tomlString(&s.Backend, k, x)
			case "path":
				err = tomlString(&s.Path, k, x)
			case "prefix":
				err = tomlString(&s.Prefix, k, x)
			case "ca":
				err = tomlString(&s.CA, k, x)
			case "cert":
				err = tomlString(&s.Cert, k, x)
			case "key":
				err = tomlString(&s.Key, k, x)
			case "dial_timeout":
				err = tomlDuration(&s.DialTimeout, k, x)
			case "request_timeout":
				err = tomlDuration(&s.RequestTimeout, k, x)
			case "endpoints":
				list, ok := x.([]any)
				if !ok {
					return fmt.Errorf("store.endpoints: want a list of URLs")
				}
				s.Endpoints = nil
				for _, e := range list {
					var ep string
					if err := tomlString(&ep, k, e); err != nil {
						return err
					}
					s.Endpoints = append(s.Endpoints, ep)
				}
			default:
				s.unknown = append(s.unknown, k) // storeKeys lists the names above
			}
			if err != nil {
				return err
			}
		}
		slices.Sort(s.unknown)
		return nil
	}
	return fmt.Errorf("store: want a path (bbolt) or a [store] section, not %T", v)
}

func tomlString(dst *string, key string, v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("store.%s: want a string, not %T", key, v)
	}
	*dst = s
	return nil
}

func tomlDuration(dst *time.Duration, key string, v any) error {
	var s string
	if err := tomlString(&s, key, v); err != nil {
		return err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("store.%s %q: %w", key, s, err)
	}
	*dst = d
	return nil
}

func (s *StoreConfig) validate() error {
	switch s.Backend {
	case BackendBbolt:
		if s.Path == "" || !filepath.IsAbs(s.Path) {
			return fmt.Errorf("store %q: must be an absolute path", s.Path)
		}
		return nil
	case BackendEtcd:
	default:
		return fmt.Errorf("store.backend %q: want %q or %q", s.Backend, BackendBbolt, BackendEtcd)
	}
	if len(s.Endpoints) == 0 {
		return fmt.Errorf("store.endpoints: at least one etcd URL is required")
	}
	plain := 0
	for _, ep := range s.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
			return fmt.Errorf("store.endpoints %q: want https://host:port", ep)
		}
		switch u.Scheme {
		case "https":
		case "http":
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("store.endpoints %q: plain http only on a loopback address (127.0.0.1); use https", ep)
			}
			plain++
		default:
			return fmt.Errorf("store.endpoints %q: want https://host:port", ep)
		}
	}
	if plain != 0 && plain != len(s.Endpoints) {
		return fmt.Errorf("store.endpoints: all https or all http on loopback, not both")
	}
	if plain != 0 && (s.CA != "" || s.Cert != "" || s.Key != "") {
		return fmt.Errorf("store: ca, cert and key are for https endpoints")
	}
	if (s.Cert == "") != (s.Key == "") {
		return fmt.Errorf("store: cert and key go together")
	}
	for _, f := range []struct{ key, v string }{{"ca", s.CA}, {"cert", s.Cert}, {"key", s.Key}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			return fmt.Errorf("store.%s %q: must be an absolute path", f.key, f.v)
		}
	}
	if len(s.Prefix) < 2 || len(s.Prefix) > 256 || s.Prefix[0] != '/' || !strings.HasSuffix(s.Prefix, "/") ||
		strings.ContainsFunc(s.Prefix, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("store.prefix %q: want /SOMETHING/ (at most 256 bytes, no spaces)", s.Prefix)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"dial_timeout", s.DialTimeout}, {"request_timeout", s.RequestTimeout}} {
		if d.v < 100*time.Millisecond || d.v > time.Minute {
			return fmt.Errorf("store.%s %s: must be between 100ms and 1m", d.key, d.v)
		}
	}
	return nil
}

// TLSConfig returns the etcd client's TLS config (nil for bbolt and for http:// on loopback): the
// CA (the system's roots without one) and the client certificate, TLS 1.2 or later.
func (s *StoreConfig) TLSConfig() (*tls.Config, error) {
	if s.Backend != BackendEtcd || len(s.Endpoints) == 0 || strings.HasPrefix(s.Endpoints[0], "http://") {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CA != "" {
		pem, err := readSafe(s.CA, securefile.Policy)
		if err != nil {
			return nil, fmt.Errorf("store.ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.ca %s: no PEM certificate", s.CA)
		}
	}
	if s.Cert != "" {
		if _, err := readSafe(s.Key, securefile.Secret); err != nil {
			return nil, fmt.Errorf("store.key: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(s.Cert, s.Key)
		if err != nil {
			return nil, fmt.Errorf("store: load the etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// String says which store this is, for the log at start.
func (s *StoreConfig) String() string {
	if s.Backend != BackendEtcd {
		return "bbolt " + s.Path
	}
	tlsInfo := "plain http on loopback"
	if !strings.HasPrefix(s.Endpoints[0], "http://") {
		tlsInfo = "TLS"
		if s.Cert != "" {
			tlsInfo += " with a client certificate"
		}
	}
	return fmt.Sprintf("etcd %s prefix %s (%s)", strings.Join(s.Endpoints, ","), s.Prefix, tlsInfo)
}

// readSafe reads a small root-owned file through securefile.
func readSafe(path string, rule securefile.Rule) ([]byte, error) {
	return securefile.ReadFile(path, rule, maxConfigSize)
}
