package portal

import (
	"context"
	"slices"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

// Backend is what the portal asks of the registry: the enrollment rules on its store, the
// nodes' progress, mail, and the session records. Refusals meant for the user are
// *refusal.Error; by names who made a change in mail notices ("the web portal from ADDR").
type Backend interface {
	// Known says whether the registry knows user (an OpenID Connect identity must be known).
	Known(ctx context.Context, user string) (bool, error)
	// MailSignInCode mails user a one-time sign-in code if the user is known and has a mail
	// address, at most once a minute. Its error is for the log only: the user is told the
	// same whatever happened.
	MailSignInCode(ctx context.Context, user, from string) error
	// SignIn checks and uses up a sign-in answer: the mailed code (mailed) or a current code
	// of a token or a backup code.
	SignIn(ctx context.Context, user, answer string, mailed bool) error

	Tokens(ctx context.Context, user string) ([]Token, error)
	// Begin starts a pending token; identified says the session's sign-in proved the user's
	// identity (mail or OpenID Connect), which stands for a first token's bootstrap code.
	Begin(ctx context.Context, user, name, proof string, identified bool) (registryapi.Enrollment, error)
	// Enrollment is Begin's answer again while the token waits for its first code.
	Enrollment(ctx context.Context, user, id string) (registryapi.Enrollment, error)
	Finish(ctx context.Context, user, id, code, by string) (registryapi.FinishResult, error)
	Rename(ctx context.Context, user, id, name, by string) error
	Remove(ctx context.Context, user, id, proof, by string) error
	BackupCodes(ctx context.Context, user, proof, by string) ([]string, error)
	// Nodes is how many of the login nodes that serve user have applied token id (active)
	// of how many serve user (total).
	Nodes(ctx context.Context, user, id string) (active, total int, err error)

	// Overview is the read-only admin overview: users, nodes, recent audit records; viewer
	// names who looks (for the log).
	Overview(ctx context.Context, viewer string) (Overview, error)

	// Sessions are keyed by the hex SHA-256 of the session id.
	PutSession(ctx context.Context, key string, s Session) error
	// GetSession returns ok false when there is none.
	GetSession(ctx context.Context, key string) (s Session, ok bool, err error)
	DeleteSession(ctx context.Context, key string) error
}

// Token is one of a user's tokens as the token list shows it.
type Token struct {
	ID       string
	Name     string
	Created  time.Time
	LastUsed time.Time // zero: never
	State    string    // "active", "disabled" or "pending"
	Active   int       // login nodes that applied it
	Total    int       // login nodes that serve the user
}

// Session is a signed-in session's server-side record.
type Session struct {
	User     string    `json:"user"`
	Method   string    `json:"method"` // SignInMail, SignInCode or SignInOIDC
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	CSRF     string    `json:"csrf"`
	Groups   []string  `json:"groups,omitempty"` // from the identity provider
}

// Expired says whether s has ended at now under idle and absolute limits.
func (s Session) Expired(now time.Time, idle, maxAge time.Duration) bool {
	return !now.Before(s.LastSeen.Add(idle)) || !now.Before(s.Created.Add(maxAge))
}

// identified says whether the sign-in proved the user's identity (not a token's code).
func (s Session) identified() bool { return s.Method == SignInMail || s.Method == SignInOIDC }

// Overview is what the admin overview shows.
type Overview struct {
	Users []registryapi.User
	Nodes []registryapi.Node
	Audit []AuditEntry // the most recent last
}

// AuditEntry is one audit record.
type AuditEntry struct {
	Seq                           int64
	Time                          time.Time
	Actor, Action, Target, Reason string
}

// admin says whether s may see the admin overview under c.
func (s Session) admin(c *Config) bool {
	return c.AdminGroup != "" && s.Method == SignInOIDC && slices.Contains(s.Groups, c.AdminGroup)
}
