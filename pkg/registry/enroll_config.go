package registry

import (
	"fmt"
	"time"
)

// Bootstrap modes of [enroll].
const (
	BootstrapNone = "none" // a first token needs no proof: the node vouches for the user's shell
	BootstrapMail = "mail" // a first token needs a code mailed by POST /v1/enroll/bootstrap
)

// EnrollConfig is the [enroll] section: the rules of terminal enrollment.
type EnrollConfig struct {
	Bootstrap string `toml:"bootstrap"`
	// MaxTokens bounds a user's active and pending tokens.
	MaxTokens int `toml:"max_tokens"`
	// MaxFailures failed proofs in a row refuse further proofs of the user for Lockout.
	MaxFailures int           `toml:"max_failures"`
	Lockout     time.Duration `toml:"lockout"`
}

func defaultEnrollConfig() EnrollConfig {
	return EnrollConfig{Bootstrap: BootstrapNone, MaxTokens: 5, MaxFailures: 10, Lockout: 15 * time.Minute}
}

// validateEnroll checks [enroll] and [mail]; Validate calls it last.
func (c *Config) validateEnroll() error {
	e := c.Enroll
	switch {
	case e.Bootstrap != BootstrapNone && e.Bootstrap != BootstrapMail:
		return fmt.Errorf("enroll bootstrap %q: want none or mail", e.Bootstrap)
	case e.MaxTokens < 1 || e.MaxTokens > 100:
		return fmt.Errorf("enroll max_tokens %d: must be between 1 and 100", e.MaxTokens)
	case e.MaxFailures < 1 || e.MaxFailures > 20:
		return fmt.Errorf("enroll max_failures %d: must be between 1 and 20", e.MaxFailures)
	case e.Lockout < time.Minute || e.Lockout > 24*time.Hour:
		return fmt.Errorf("enroll lockout %s: must be between 1m and 24h", e.Lockout)
	}
	if err := c.Mail.Validate(); err != nil {
		return err
	}
	if e.Bootstrap == BootstrapMail && c.Mail.Host == "" {
		return fmt.Errorf("enroll bootstrap = \"mail\" needs [mail] host: bootstrap codes travel by mail")
	}
	return nil
}
