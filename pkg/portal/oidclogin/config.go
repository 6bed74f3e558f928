package oidclogin

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
)

// Config is the [portal.oidc] section of registry.conf.
type Config struct {
	// Issuer is the provider's issuer URL (https; http only for a 127.0.0.1 or ::1 issuer, in tests).
	Issuer string `toml:"issuer"`
	// ClientID is the client the site registered at the provider.
	ClientID string `toml:"client_id"`
	// ClientSecretFile holds the client secret (root 0600); "" is a public client (PKCE only).
	ClientSecretFile string `toml:"client_secret_file"`
	// Scopes are asked for; "openid" is always asked.
	Scopes []string `toml:"scopes"`
	// UsernameClaim is the ID token claim that holds the registry user name.
	UsernameClaim string `toml:"username_claim"`
	// GroupsClaim is the ID token claim that holds the user's groups (a string or a list).
	GroupsClaim string `toml:"groups_claim"`
	// RequiredGroup, when set, must be one of the user's groups.
	RequiredGroup string `toml:"required_group"`
}

// DefaultConfig is the one defaults literal of [portal.oidc].
func DefaultConfig() Config {
	return Config{
		Scopes:        []string{"openid", "profile"},
		UsernameClaim: "preferred_username",
		GroupsClaim:   "groups",
	}
}

// Validate checks every value of [portal.oidc].
func (c Config) Validate() error {
	if err := validIssuer(c.Issuer); err != nil {
		return err
	}
	if c.ClientID == "" || len(c.ClientID) > 256 || !printableWord(c.ClientID) {
		return fmt.Errorf("portal.oidc client_id %q: want the client id registered at the provider (1 to 256 printable bytes, no spaces)", c.ClientID)
	}
	if c.ClientSecretFile != "" && !filepath.IsAbs(c.ClientSecretFile) {
		return fmt.Errorf("portal.oidc client_secret_file %q: must be an absolute path", c.ClientSecretFile)
	}
	for _, s := range c.Scopes {
		if s == "" || len(s) > 128 || !printableWord(s) {
			return fmt.Errorf("portal.oidc scopes: %q is not a scope (1 to 128 printable bytes, no spaces)", s)
		}
	}
	for _, k := range []struct{ key, v string }{{"username_claim", c.UsernameClaim}, {"groups_claim", c.GroupsClaim}} {
		if k.v == "" || len(k.v) > 128 || !printableWord(k.v) {
			return fmt.Errorf("portal.oidc %s %q: want a claim name (1 to 128 printable bytes, no spaces)", k.key, k.v)
		}
	}
	if len(c.RequiredGroup) > 256 || strings.ContainsAny(c.RequiredGroup, "\x00\r\n") {
		return fmt.Errorf("portal.oidc required_group: want one line of at most 256 bytes")
	}
	return nil
}

// validIssuer accepts an https URL, or an http URL whose host is 127.0.0.1 or ::1 (a provider
// that tests start on the loopback), without query or fragment.
func validIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("portal.oidc issuer %q: want an https URL like https://idp.example.org/realms/hpc", issuer)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback)) {
			return nil
		}
		return fmt.Errorf("portal.oidc issuer %q: http is only for a provider on 127.0.0.1 or ::1; use https", issuer)
	}
	return fmt.Errorf("portal.oidc issuer %q: want an https URL like https://idp.example.org/realms/hpc", issuer)
}

// printableWord is a non-empty string of printable ASCII without spaces.
func printableWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}
