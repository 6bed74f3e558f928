package portal

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/portal/oidclogin"
)

// Sign-in methods of Config.SignIn.
const (
	SignInMail = "mail" // a one-time code mailed to the user's address
	SignInCode = "code" // a current code of a token or a backup code
	SignInOIDC = "oidc" // the site's OpenID Connect provider ([portal.oidc])
)

// Config is the [portal] section of registry.conf.
type Config struct {
	Enabled     bool          `toml:"enabled"`
	SiteName    string        `toml:"site_name"`
	Contact     string        `toml:"contact"`
	SignIn      []string      `toml:"sign_in"`
	SessionIdle time.Duration `toml:"session_idle"`
	SessionMax  time.Duration `toml:"session_max"`
	PublicURL   string        `toml:"public_url"`
	// AdminGroup: a session signed in through OpenID Connect whose groups hold it sees the
	// read-only admin overview at /portal/admin ("" : no overview).
	AdminGroup string `toml:"admin_group"`
	// OIDC is [portal.oidc], needed when SignIn has SignInOIDC.
	OIDC oidclogin.Config `toml:"oidc"`
}

// DefaultConfig is the one defaults literal of [portal].
func DefaultConfig() Config {
	return Config{SiteName: "pam-totp", SignIn: []string{SignInMail, SignInCode},
		SessionIdle: 15 * time.Minute, SessionMax: 8 * time.Hour, OIDC: oidclogin.DefaultConfig()}
}

// Validate checks every value (also when the portal is off, so a mistake shows before it is
// turned on).
func (c *Config) Validate() error {
	if c.SiteName == "" || len(c.SiteName) > 64 || strings.ContainsAny(c.SiteName, "\r\n") {
		return fmt.Errorf("portal site_name %q: 1 to 64 characters on one line", c.SiteName)
	}
	if len(c.Contact) > 256 || strings.ContainsAny(c.Contact, "\r\n") {
		return fmt.Errorf("portal contact: at most 256 characters on one line")
	}
	if len(c.SignIn) == 0 {
		return fmt.Errorf("portal sign_in: want at least one of %q, %q, %q", SignInMail, SignInCode, SignInOIDC)
	}
	for i, m := range c.SignIn {
		if m != SignInMail && m != SignInCode && m != SignInOIDC {
			return fmt.Errorf("portal sign_in %q: want %q, %q or %q", m, SignInMail, SignInCode, SignInOIDC)
		}
		if slices.Index(c.SignIn, m) != i {
			return fmt.Errorf("portal sign_in: %q given twice", m)
		}
	}
	switch {
	case c.SessionIdle < time.Minute || c.SessionIdle > 24*time.Hour:
		return fmt.Errorf("portal session_idle %s: must be between 1m and 24h", c.SessionIdle)
	case c.SessionMax < c.SessionIdle || c.SessionMax > 7*24*time.Hour:
		return fmt.Errorf("portal session_max %s: must be between session_idle (%s) and 168h", c.SessionMax, c.SessionIdle)
	}
	if c.Has(SignInOIDC) {
		if err := c.OIDC.Validate(); err != nil {
			return err
		}
	}
	if c.AdminGroup != "" && (!c.Has(SignInOIDC) || len(c.AdminGroup) > 256 || strings.ContainsAny(c.AdminGroup, "\x00\r\n")) {
		return fmt.Errorf("portal admin_group %q: needs \"oidc\" in sign_in (the group comes from the identity provider), one line of at most 256 bytes", c.AdminGroup)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("portal public_url %q: want https://host[:port] as users reach the registry", c.PublicURL)
		}
	}
	return nil
}

// Has says whether method is one of the sign-in methods.
func (c *Config) Has(method string) bool { return slices.Contains(c.SignIn, method) }
