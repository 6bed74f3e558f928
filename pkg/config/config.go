// Package config reads pam_totp.conf, the root-owned policy of a login node.
//
// The file is TOML. Top-level keys set the default policy; a [policy.NAME] section overrides any
// of them for the PAM service NAME (or for the name given with the module's policy= argument).
// [store] and [rate_limit] are node-wide. Defaults live in one literal (Default) and every check in
// one method (Validate): values that weaken security are errors; unknown keys are warnings where
// the file is loaded to work with (a typo must not lock everyone out) and errors for
// --check-config (Check), named with their line, column and the nearest valid key (package confkey).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pam-totp/pam-totp/pkg/confkey"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// maxSize bounds the config file; anything larger is not a config.
const maxSize = 1 << 20

// Modes of a policy.
const (
	ModeEnforce = "enforce" // every user needs a verified code (or an exemption)
	ModeGrace   = "grace"   // users without a token get in until GraceUntil, and are told to enroll
	ModeOff     = "off"     // nobody is asked; every login is logged as let in by policy
)

// Policy is what decides one authentication. It is the top level of the file, overridden per service.
type Policy struct {
	Mode string `toml:"mode"`
	// GraceUntil ends enrollment grace (mode "grace"); after it, grace behaves as enforce.
	GraceUntil time.Time `toml:"grace_until"`
	// ExemptNetworks lets clients from these CIDRs (PAM_RHOST) in without a code.
	ExemptNetworks []string `toml:"exempt_networks"`
	ExemptGroups   []string `toml:"exempt_groups"`
	ExemptUsers    []string `toml:"exempt_users"`
	// Window is how many time steps either side of now a code may come from.
	Window int `toml:"window"`
	// SkewHintSteps: a code that matches 2..SkewHintSteps steps away is refused with a clock hint.
	SkewHintSteps int `toml:"skew_hint_steps"`
	// Prompt is the text of the code prompt.
	Prompt string `toml:"prompt"`
	// PasswordAndCode asks for password and code in one answer and passes the password on as
	// PAM_AUTHTOK (for clients that show a single prompt; stack pam_unix with use_first_pass).
	PasswordAndCode bool `toml:"password_and_code"`
	// SSHGrace: after a verified code, the same user from the same address with the same SSH key
	// is let in without a prompt for this long (needs sshd ExposeAuthInfo). 0 is off.
	SSHGrace time.Duration `toml:"ssh_grace"`
	// SudoFreshness: a code verified in this login session spares further prompts of this service
	// for this long. 0 is off.
	SudoFreshness time.Duration `toml:"sudo_freshness"`
	// Contact is appended to messages that send the user for help.
	Contact string `toml:"contact"`
	// EnrollAtLogin: a user in enrollment grace without a token is offered enrollment during the
	// login itself (QR code as PAM text, first code at a prompt), through totp-syncd on [sync] socket.
	// If the daemon cannot answer quickly, the login goes on under grace.
	EnrollAtLogin bool `toml:"enroll_at_login"`

	exemptNets []netip.Prefix
}

// Store says where the node's databases are.
type Store struct {
	Dir string `toml:"dir"`
	// OpenTimeout bounds the wait for a database lock.
	OpenTimeout time.Duration `toml:"open_timeout"`
}

// RateLimit bounds guessing: consecutive failures per user, on this node, across all services.
type RateLimit struct {
	// FreeFailures may fail in a row before back-off starts.
	FreeFailures int `toml:"free_failures"`
	// InitialBackoff is the first wait; each further failure doubles it, up to MaxBackoff.
	InitialBackoff time.Duration `toml:"initial_backoff"`
	MaxBackoff     time.Duration `toml:"max_backoff"`
	// LockoutAfter consecutive failures lock the user's second factor until an admin resets it.
	LockoutAfter int `toml:"lockout_after"`
}

// Limits is the failure rule of r.
func (r RateLimit) Limits() token.Limits {
	return token.Limits{FreeFailures: r.FreeFailures, InitialBackoff: r.InitialBackoff,
		MaxBackoff: r.MaxBackoff, LockoutAfter: r.LockoutAfter}
}

// Sync connects the node to a registry (totp-syncd). An empty Registry means standalone: the
// node's authority is totp-admin.
type Sync struct {
	// Registry is the registry's URL, or the URLs of several replicas of one registry store
	// (docs/sync-protocol.md, "Fail-over"): "https://registry.example.org:8443" or a list.
	Registry       URLs   `toml:"registry"`
	CAFile         string `toml:"ca_file"`         // the registry's CA, pinned
	CredentialFile string `toml:"credential_file"` // the node's bearer credential, root 0600
	ClientCert     string `toml:"client_cert"`     // mTLS instead of the bearer credential
	ClientKey      string `toml:"client_key"`
	MetricsListen  string `toml:"metrics_listen"` // Prometheus text on this local address; "" off
	// MaxOffline: a node that has not heard from the registry for longer is stale. 0 is never.
	MaxOffline time.Duration `toml:"max_offline"`
	// Offline says what logins do on a stale node: "serve" (from the last copy, logged loudly)
	// or "deny" (TOTP users are denied as store unavailable).
	Offline string `toml:"offline"`
	// Bus is the D-Bus address of totp-syncd's service for the user's totp CLI and for
	// totp-syncd itself; "" is the system bus.
	Bus string `toml:"bus"`
	// Socket is totp-syncd's root-only Unix socket, on which the PAM helper asks for enrollment
	// at login (package rootsock); "" is totp-syncd.sock in [store] dir. Its directory must be
	// root's, mode 0700.
	Socket string `toml:"socket"`
	// VerifySocket is where totp-syncd serves the resident verifier that pam_totp.so tries
	// before it execs the helper (module argument socket=, same default); "none" turns it off.
	// Its directory must be root's and writable by root alone.
	VerifySocket string `toml:"verify_socket"`
	// ClaimTimeout bounds the round trip in which the registry claims an accepted code for this
	// login (docs/sync-protocol.md, "Claims and the failure budget").
	ClaimTimeout time.Duration `toml:"claim_timeout"`
	// OfflineClaims says what a login whose code the registry could not claim does (the
	// registry did not answer within claim_timeout, totp-syncd has no stream to it, or the
	// helper decided without totp-syncd): "local" accepts on this node's replay record alone and
	// reports the claim later; "deny" refuses the code.
	OfflineClaims string `toml:"offline_claims"`
}

// VerifySocketPath is [sync] verify_socket or its default; "" when it is "none".
func (c *Config) VerifySocketPath() string {
	switch c.Sync.VerifySocket {
	case "":
		return paths.VerifySocket()
	case "none":
		return ""
	}
	return c.Sync.VerifySocket
}

// SocketPath is [sync] socket, or its default in the store directory.
func (c *Config) SocketPath() string {
	if c.Sync.Socket != "" {
		return c.Sync.Socket
	}
	return filepath.Join(c.Store.Dir, rootsock.FileName)
}

// Offline actions ([sync] offline and offline_claims).
const (
	OfflineServe = "serve"
	OfflineDeny  = "deny"
	OfflineLocal = "local"
)

// Config is the whole file.
type Config struct {
	Policy
	Store     Store     `toml:"store"`
	RateLimit RateLimit `toml:"rate_limit"`
	Sync      Sync      `toml:"sync"`
	// Issuer labels tokens in authenticator apps (the otpauth issuer).
	Issuer string `toml:"issuer"`
	// Policies holds the per-service overrides, by section name.
	Policies map[string]Policy `toml:"-"`
	// Unknown are the keys the file sets that mean nothing here: warnings at load (the login
	// path goes on without them), errors for --check-config (confkey.Strict).
	Unknown confkey.Keys `toml:"-"`
}

// Default is the one defaults literal.
func Default() Config {
	return Config{
		Policy: Policy{
			Mode:          ModeEnforce,
			Window:        1,
			SkewHintSteps: 10,
			Prompt:        "Verification code: ",
		},
		Store:  Store{Dir: paths.StateDir(), OpenTimeout: 3 * time.Second},
		Issuer: "pam-totp",
		Sync: Sync{
			CAFile:         paths.Conf("registry-ca.pem"),
			CredentialFile: paths.Conf("node.credential"),
			MetricsListen:  "127.0.0.1:9464",
			Offline:        OfflineServe,
			VerifySocket:   paths.VerifySocket(),
			ClaimTimeout:   300 * time.Millisecond,
			OfflineClaims:  OfflineLocal,
		},
		RateLimit: RateLimit{
			FreeFailures:   3,
			InitialBackoff: 30 * time.Second,
			MaxBackoff:     15 * time.Minute,
			LockoutAfter:   20,
		},
		Policies: map[string]Policy{},
	}
}

// ErrUnknownPolicy is returned by For when policy= names a section the file does not have.
var ErrUnknownPolicy = errors.New("unknown policy section")

// Load opens path safely (root-owned, not writable by others, no symlink) and parses it.
// Warnings (unknown keys) are returned beside a nil error.
func Load(path string) (*Config, []string, error) {
	data, err := read(path)
	if err != nil {
		return nil, nil, err
	}
	c, unknown, err := parse(data)
	unknown.InFile(path)
	if err != nil {
		return nil, unknown.Warnings(), fmt.Errorf("config %s: %w", path, err)
	}
	c.Unknown = unknown
	return c, unknown.Warnings(), nil
}

// Check is Load for --check-config: an unknown key is an error too, with its position and the
// nearest valid name (pam_totp.conf has no warnings but unknown keys).
func Check(path string) (*Config, error) {
	data, err := read(path)
	if err != nil {
		return nil, err
	}
	c, unknown, err := parse(data)
	unknown.InFile(path) // each key names the file
	if err != nil {
		err = fmt.Errorf("config %s: %w", path, err)
	}
	if err = errors.Join(unknown.Err(), err); err != nil {
		return nil, err
	}
	return c, nil
}

// read reads the config at path safely (root-owned, not writable by others, no symlink).
func read(path string) ([]byte, error) {
	data, err := securefile.ReadFile(path, securefile.Rule{Forbidden: 0o022, What: "config"}, maxSize)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	return data, nil
}

// keyNames are the valid keys of each table; a [policy.NAME] section takes the top level's policy
// keys. Made on first use: only a file with an unknown key needs them, not every login's helper.
var keyNames = sync.OnceValue(func() confkey.Names {
	return confkey.NamesOf(struct {
		Config
		Policy Policy `toml:"policy"`
	}{})
})

// Parse parses and validates a config from memory. Warnings (unknown keys) are returned beside a
// nil error.
func Parse(data []byte) (*Config, []string, error) {
	c, unknown, err := parse(data)
	if err != nil {
		return nil, unknown.Warnings(), err
	}
	c.Unknown = unknown
	return c, unknown.Warnings(), nil
}

// parse parses and validates a config from memory and finds its unknown keys.
func parse(data []byte) (*Config, confkey.Keys, error) {
	// One decode: the node-wide keys into Config, the [policy.*] sections kept raw so that each
	// can start from the finished top-level policy and override only what it names.
	file := struct {
		Config
		Sections map[string]toml.Primitive `toml:"policy"`
	}{Config: Default()}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&file)
	if err != nil {
		return nil, nil, err
	}
	c := file.Config
	names := make([]string, 0, len(file.Sections))
	for name := range file.Sections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := c.Policy
		p.ExemptNetworks = append([]string(nil), p.ExemptNetworks...)
		p.ExemptGroups = append([]string(nil), p.ExemptGroups...)
		p.ExemptUsers = append([]string(nil), p.ExemptUsers...)
		p.exemptNets = nil
		if err := md.PrimitiveDecode(file.Sections[name], &p); err != nil {
			return nil, nil, fmt.Errorf("[policy.%s]: %w", name, err)
		}
		c.Policies[name] = p
	}
	var undecoded []toml.Key
	for _, k := range md.Undecoded() {
		if len(k) == 2 && k[0] == "policy" {
			continue // a section header: its keys are checked one by one
		}
		undecoded = append(undecoded, k)
	}
	var unknown confkey.Keys
	if len(undecoded) > 0 {
		unknown = confkey.Find(data, undecoded, keyNames(), func(parent toml.Key) string {
			if len(parent) == 2 && parent[0] == "policy" {
				return "policy"
			}
			return strings.Join(parent, ".")
		})
	}
	if err := c.Validate(); err != nil {
		return nil, unknown, err
	}
	return &c, unknown, nil
}

// Validate checks every value; it also prepares parsed forms (exempt networks).
func (c *Config) Validate() error {
	if err := c.Policy.validate("top level"); err != nil {
		return err
	}
	for name, p := range c.Policies {
		if name == "" || strings.ContainsAny(name, " \t/") {
			return fmt.Errorf("policy section name %q: must be a plain name", name)
		}
		if err := p.validate("[policy." + name + "]"); err != nil {
			return err
		}
		c.Policies[name] = p
	}
	if c.Store.Dir == "" || c.Store.Dir[0] != '/' {
		return fmt.Errorf("store.dir %q: must be an absolute path", c.Store.Dir)
	}
	if v := c.Sync.VerifySocket; v != "" && v != "none" && !filepath.IsAbs(v) {
		return fmt.Errorf("sync.verify_socket %q: must be an absolute path or \"none\"", v)
	}
	if c.Sync.Socket != "" && !filepath.IsAbs(c.Sync.Socket) {
		return fmt.Errorf("sync.socket %q: must be an absolute path", c.Sync.Socket)
	}
	if c.Store.OpenTimeout < 100*time.Millisecond || c.Store.OpenTimeout > 30*time.Second {
		return fmt.Errorf("store.open_timeout %s: must be between 100ms and 30s", c.Store.OpenTimeout)
	}
	r := c.RateLimit
	switch {
	case r.FreeFailures < 0 || r.FreeFailures > 10:
		return fmt.Errorf("rate_limit.free_failures %d: must be between 0 and 10", r.FreeFailures)
	case r.InitialBackoff < time.Second || r.InitialBackoff > time.Hour:
		return fmt.Errorf("rate_limit.initial_backoff %s: must be between 1s and 1h", r.InitialBackoff)
	case r.MaxBackoff < r.InitialBackoff || r.MaxBackoff > 24*time.Hour:
		return fmt.Errorf("rate_limit.max_backoff %s: must be between initial_backoff and 24h", r.MaxBackoff)
	case r.LockoutAfter <= r.FreeFailures || r.LockoutAfter > 50:
		// NIST SP 800-63B allows at most 100 consecutive failures; we stay well under it.
		return fmt.Errorf("rate_limit.lockout_after %d: must be above free_failures and at most 50", r.LockoutAfter)
	}
	if err := c.Sync.validate(); err != nil {
		return err
	}
	if c.Issuer == "" || strings.ContainsAny(c.Issuer, ":\n") {
		return fmt.Errorf("issuer %q: must be non-empty without ':'", c.Issuer)
	}
	return nil
}

func (s *Sync) validate() error {
	switch s.Offline {
	case OfflineServe, OfflineDeny:
	default:
		return fmt.Errorf("sync.offline %q: must be serve or deny", s.Offline)
	}
	if s.MaxOffline < 0 {
		return fmt.Errorf("sync.max_offline %s: must not be negative", s.MaxOffline)
	}
	switch s.OfflineClaims {
	case OfflineLocal, OfflineDeny:
	default:
		return fmt.Errorf("sync.offline_claims %q: must be local or deny", s.OfflineClaims)
	}
	if s.ClaimTimeout < 10*time.Millisecond || s.ClaimTimeout > 5*time.Second {
		return fmt.Errorf("sync.claim_timeout %s: must be between 10ms and 5s", s.ClaimTimeout)
	}
	if len(s.Registry) == 0 {
		return nil
	}
	if err := s.Registry.Validate(); err != nil {
		return fmt.Errorf("sync.registry: %w", err)
	}
	if (s.ClientCert == "") != (s.ClientKey == "") {
		return fmt.Errorf("sync: client_cert and client_key go together")
	}
	for name, p := range map[string]string{"ca_file": s.CAFile, "credential_file": s.CredentialFile} {
		if p == "" || p[0] != '/' {
			return fmt.Errorf("sync.%s %q: must be an absolute path", name, p)
		}
	}
	return nil
}

func (p *Policy) validate(where string) error {
	switch p.Mode {
	case ModeEnforce, ModeOff:
	case ModeGrace:
		if p.GraceUntil.IsZero() {
			return fmt.Errorf("%s: mode = \"grace\" needs grace_until (the enrollment deadline)", where)
		}
	default:
		return fmt.Errorf("%s: mode %q: must be enforce, grace or off", where, p.Mode)
	}
	if p.Window < 0 || p.Window > 3 {
		return fmt.Errorf("%s: window %d: must be between 0 and 3 time steps", where, p.Window)
	}
	if p.SkewHintSteps < 0 || p.SkewHintSteps > 20 {
		return fmt.Errorf("%s: skew_hint_steps %d: must be between 0 and 20", where, p.SkewHintSteps)
	}
	if p.SSHGrace < 0 || p.SSHGrace > 24*time.Hour {
		return fmt.Errorf("%s: ssh_grace %s: must be between 0 and 24h", where, p.SSHGrace)
	}
	if p.SudoFreshness < 0 || p.SudoFreshness > time.Hour {
		return fmt.Errorf("%s: sudo_freshness %s: must be between 0 and 1h", where, p.SudoFreshness)
	}
	if strings.TrimSpace(p.Prompt) == "" || len(p.Prompt) > 200 {
		return fmt.Errorf("%s: prompt: must be 1 to 200 characters", where)
	}
	p.exemptNets = p.exemptNets[:0]
	for _, n := range p.ExemptNetworks {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(n))
		if err != nil {
			// A bare address means that one host.
			addr, aerr := netip.ParseAddr(strings.TrimSpace(n))
			if aerr != nil {
				return fmt.Errorf("%s: exempt_networks %q: not a CIDR or address", where, n)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		if pfx.Bits() == 0 {
			return fmt.Errorf("%s: exempt_networks %q: exempts every address; use mode = \"off\" instead", where, n)
		}
		p.exemptNets = append(p.exemptNets, pfx.Masked())
	}
	return nil
}

// For returns the policy for a PAM service: the section named by the module's policy= argument
// (which must exist), else the section named like the service, else the top level.
func (c *Config) For(service, policy string) (Policy, error) {
	if policy != "" {
		p, ok := c.Policies[policy]
		if !ok {
			return Policy{}, fmt.Errorf("policy=%s: %w", policy, ErrUnknownPolicy)
		}
		return p, nil
	}
	if p, ok := c.Policies[service]; ok {
		return p, nil
	}
	return c.Policy, nil
}

// ExemptAddr reports whether the client address (PAM_RHOST) is in an exempt network, and which.
// An empty or non-numeric host is never exempt.
func (p *Policy) ExemptAddr(rhost string) (string, bool) {
	addr, err := netip.ParseAddr(strings.TrimSpace(rhost))
	if err != nil {
		return "", false
	}
	addr = addr.Unmap()
	for _, n := range p.exemptNets {
		if n.Contains(addr) {
			return n.String(), true
		}
	}
	return "", false
}

// InGrace reports whether enrollment grace is in force at now.
func (p *Policy) InGrace(now time.Time) bool {
	return p.Mode == ModeGrace && now.Before(p.GraceUntil)
}
