package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// The admin API's types are package registryapi's, named here for this package's callers.
type (
	User          = registryapi.User
	Removed       = registryapi.Removed
	Passcode      = registryapi.Passcode
	Node          = registryapi.Node
	NewNode       = registryapi.NewNode
	GAResult      = registryapi.GAResult
	AuditCheck    = registryapi.AuditCheck
	CompactResult = registryapi.CompactResult
	Status        = registryapi.Status
	AdminIdentity = registryapi.AdminIdentity
	Outcome       = registryapi.Outcome
	UserResult    = registryapi.UserResult
	TokenResult   = registryapi.TokenResult
	Unlocked      = registryapi.Unlocked
)

// changed is the Outcome a change's answer starts from before it is decoded: an answer without
// "changed" (from a registry before it said so) changed something.
var changed = Outcome{Changed: true}

// NewUser is the body of POST /v1/admin/users.
type NewUser struct {
	Name   string   `json:"name"`
	Mail   string   `json:"mail,omitempty"`
	Scopes []string `json:"scopes"`
}

// UserChange is the body of PATCH /v1/admin/users/NAME: nil fields stay as they are.
type UserChange struct {
	Mail   *string   `json:"mail,omitempty"`
	Scopes *[]string `json:"scopes,omitempty"`
}

// NewToken is the body of POST /v1/admin/users/NAME/tokens. An empty Secret asks the registry to
// generate one; zero parameters take the registry's defaults; an empty State means active.
type NewToken struct {
	Name      string `json:"name,omitempty"`
	Secret    string `json:"secret,omitempty"` // base32
	Algorithm string `json:"algorithm,omitempty"`
	Digits    int    `json:"digits,omitempty"`
	Period    int    `json:"period,omitempty"`
	State     string `json:"state,omitempty"`
}

// TokenChange is the body of PATCH /v1/admin/users/NAME/tokens/ID.
type TokenChange struct {
	State *string `json:"state,omitempty"`
	Name  *string `json:"name,omitempty"`
}

// Token states the admin API sets.
const (
	Active   = "active"
	Disabled = "disabled"
	Pending  = "pending"
)

// ImportResult is the answer to ImportCSV.
type ImportResult struct {
	Added        int `json:"added"`         // tokens added
	Duplicates   int `json:"duplicates"`    // tokens already present, skipped
	UsersCreated int `json:"users_created"` // users the import created
	Revisions    int `json:"revisions"`     // revisions (chunks) written
	// Invalid are the lines skipped (ImportOptions.SkipInvalid); without it an invalid line
	// makes the import fail with an *APIError whose Invalid lists them.
	Invalid []LineError `json:"invalid"`
}

// LineError is one invalid line of an import file; Msg names the field, never its text.
type LineError struct {
	Line int    `json:"line"`
	Msg  string `json:"msg"`
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ImportOptions go with a CSV import.
type ImportOptions struct {
	// Scope is given to the users the import creates ("" none).
	Scope string
	// SkipInvalid imports the valid lines even if some are invalid.
	SkipInvalid bool
	// Algorithm, Digits and Period are the parameters of every imported token (zero: defaults).
	Algorithm      string
	Digits, Period int
}

// AuditRecord is one entry of the registry's hash-chained audit log.
type AuditRecord struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Target   string    `json:"target"`
	Reason   string    `json:"reason,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Prev     string    `json:"prev"`
	Hash     string    `json:"hash"`
}

// list decodes a listing given as a JSON array or as an object holding the array under key.
func list[T any](key string) *listOf[T] { return &listOf[T]{key: key} }

type listOf[T any] struct {
	key   string
	items []T
}

func (l *listOf[T]) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		return json.Unmarshal(data, &l.items)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	raw, ok := obj[l.key]
	if !ok {
		return fmt.Errorf("no %q in the answer", l.key)
	}
	if string(raw) == "null" {
		return nil
	}
	return json.Unmarshal(raw, &l.items)
}

const (
	pUsers  = "users"
	pTokens = "tokens"
	pNodes  = "nodes"
)

func admin(path ...string) []string { return append([]string{"v1", "admin"}, path...) }

// Users lists every user with its token count.
func (c *Client) Users(ctx context.Context) ([]User, error) {
	l := list[User]("users")
	err := c.get(ctx, l, admin(pUsers)...)
	return l.items, err
}

// User returns one user.
func (c *Client) User(ctx context.Context, name string) (User, error) {
	var u User
	err := c.get(ctx, &u, admin(pUsers, name)...)
	return u, err
}

// AddUser creates a user. A user who exists as asked is unchanged (Changed false); one who
// exists otherwise is a conflict.
func (c *Client) AddUser(ctx context.Context, n NewUser) (UserResult, error) {
	if n.Scopes == nil {
		n.Scopes = []string{}
	}
	u := UserResult{Outcome: changed}
	err := c.send(ctx, http.MethodPost, n, &u, admin(pUsers)...)
	return u, err
}

// UpdateUser changes a user's mail address or scopes (unchanged when they are as asked).
func (c *Client) UpdateUser(ctx context.Context, name string, ch UserChange) (UserResult, error) {
	u := UserResult{Outcome: changed}
	err := c.send(ctx, http.MethodPatch, ch, &u, admin(pUsers, name)...)
	return u, err
}

// RemoveUser removes a user with its tokens and codes.
func (c *Client) RemoveUser(ctx context.Context, name string) (Removed, error) {
	r := Removed{Outcome: changed}
	err := c.send(ctx, http.MethodDelete, nil, &r, admin(pUsers, name)...)
	return r, err
}

// Tokens lists a user's tokens (without secrets).
func (c *Client) Tokens(ctx context.Context, user string) ([]token.Info, error) {
	l := list[token.Info]("tokens")
	err := c.get(ctx, l, admin(pUsers, user, pTokens)...)
	return l.items, err
}

// AddToken adds a token to a user.
func (c *Client) AddToken(ctx context.Context, user string, n NewToken) (registryapi.AddedToken, error) {
	var t registryapi.AddedToken
	err := c.send(ctx, http.MethodPost, n, &t, admin(pUsers, user, pTokens)...)
	return t, err
}

// UpdateToken changes a token's state or name (unchanged when they are as asked). The answer's
// token is zero if the registry answered without a body.
func (c *Client) UpdateToken(ctx context.Context, user, id string, ch TokenChange) (TokenResult, error) {
	t := TokenResult{Outcome: changed}
	err := c.send(ctx, http.MethodPatch, ch, &t, admin(pUsers, user, pTokens, id)...)
	return t, err
}

// RemoveToken removes one token and returns it as it was (zero if the registry does not say).
func (c *Client) RemoveToken(ctx context.Context, user, id string) (TokenResult, error) {
	t := TokenResult{Outcome: changed}
	err := c.send(ctx, http.MethodDelete, nil, &t, admin(pUsers, user, pTokens, id)...)
	return t, err
}

// Reset removes all tokens and backup codes of a user (lost device).
func (c *Client) Reset(ctx context.Context, user string) (Removed, error) {
	var r Removed
	err := c.send(ctx, http.MethodPost, struct{}{}, &r, admin(pUsers, user, "reset")...)
	return r, err
}

// Unlock clears a user's failed proofs at the registry and says how many there were (unchanged
// when the user was not locked).
func (c *Client) Unlock(ctx context.Context, user string) (Unlocked, error) {
	r := Unlocked{Outcome: changed}
	err := c.send(ctx, http.MethodPost, struct{}{}, &r, admin(pUsers, user, "unlock")...)
	return r, err
}

// BackupCodes replaces a user's backup codes with a new set and returns the plain codes, once.
func (c *Client) BackupCodes(ctx context.Context, user string) ([]string, error) {
	var r struct {
		Codes []string `json:"codes"`
	}
	if err := c.send(ctx, http.MethodPost, struct{}{}, &r, admin(pUsers, user, "backup-codes")...); err != nil {
		return nil, err
	}
	if len(r.Codes) == 0 {
		return nil, fmt.Errorf("backup codes: the answer has no codes: %w", ErrBadAnswer)
	}
	return r.Codes, nil
}

// Passcode issues a helpdesk one-time passcode valid for ttl (zero: the registry's default).
func (c *Client) Passcode(ctx context.Context, user string, ttl time.Duration) (Passcode, error) {
	var in struct {
		TTL string `json:"ttl,omitempty"`
	}
	if ttl > 0 {
		in.TTL = ttl.String()
	}
	var p Passcode
	if err := c.send(ctx, http.MethodPost, in, &p, admin(pUsers, user, "passcode")...); err != nil {
		return p, err
	}
	if p.Code == "" {
		return p, fmt.Errorf("passcode: the answer has no code: %w", ErrBadAnswer)
	}
	return p, nil
}

// AddNode registers a login node and returns its credential, once. A node that exists in scope
// is unchanged, and its credential is not shown again (empty).
func (c *Client) AddNode(ctx context.Context, name, scope string) (NewNode, error) {
	in := struct {
		Name  string `json:"name"`
		Scope string `json:"scope"`
	}{name, scope}
	n := NewNode{Outcome: changed}
	if err := c.send(ctx, http.MethodPost, in, &n, admin(pNodes)...); err != nil {
		return n, err
	}
	if n.Changed && n.Credential == "" {
		return n, fmt.Errorf("node add: the answer has no credential: %w", ErrBadAnswer)
	}
	return n, nil
}

// Nodes lists the login nodes with their sync state.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	l := list[Node]("nodes")
	err := c.get(ctx, l, admin(pNodes)...)
	return l.items, err
}

// RemoveNode removes a node; its streams close and its credential stops working at once.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	return c.send(ctx, http.MethodDelete, nil, nil, admin(pNodes, name)...)
}

// ImportCSV sends a CSV file of lines "user,base32secret[,name]".
func (c *Client) ImportCSV(ctx context.Context, csv io.Reader, o ImportOptions) (ImportResult, error) {
	q := url.Values{}
	if o.Scope != "" {
		q.Set("scope", o.Scope)
	}
	if o.SkipInvalid {
		q.Set("skip_invalid", "1")
	}
	if o.Algorithm != "" {
		q.Set("algorithm", o.Algorithm)
	}
	if o.Digits != 0 {
		q.Set("digits", strconv.Itoa(o.Digits))
	}
	if o.Period != 0 {
		q.Set("period", strconv.Itoa(o.Period))
	}
	var r ImportResult
	err := c.call(ctx, request{method: http.MethodPost, path: admin("import", "csv"), query: q,
		body: csv, ctype: "text/csv", change: true, long: true}, &r)
	return r, err
}

// ImportGA sends a google-authenticator file as user's token and backup codes.
func (c *Client) ImportGA(ctx context.Context, user string, file []byte) (GAResult, error) {
	var r GAResult
	err := c.call(ctx, request{method: http.MethodPost, path: admin("import", "google-authenticator"),
		query: url.Values{"user": {user}}, body: bytes.NewReader(file), ctype: "text/plain",
		change: true, long: true}, &r)
	return r, err
}

// Audit returns audit records after sequence number after (0: from the start), at most limit
// of them (0: the registry's default).
func (c *Client) Audit(ctx context.Context, after int64, limit int) ([]AuditRecord, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	l := list[AuditRecord]("records")
	err := c.call(ctx, request{method: http.MethodGet, path: admin("audit"), query: q}, l)
	return l.items, err
}

// VerifyAudit asks the registry to check the audit log's hash chain.
func (c *Client) VerifyAudit(ctx context.Context) (AuditCheck, error) {
	var r AuditCheck
	err := c.get(ctx, &r, admin("audit", "verify")...)
	return r, err
}

// Compact drops the change history older than the last keep revisions.
func (c *Client) Compact(ctx context.Context, keep int64) (CompactResult, error) {
	in := struct {
		Keep int64 `json:"keep"`
	}{keep}
	var r CompactResult
	err := c.send(ctx, http.MethodPost, in, &r, admin("compact")...)
	return r, err
}

// Whoami returns the admin of the client's token: name, role, scopes and expiry.
func (c *Client) Whoami(ctx context.Context) (AdminIdentity, error) {
	var a AdminIdentity
	err := c.get(ctx, &a, admin("whoami")...)
	return a, err
}

// Status returns the registry's revision, compacted revision and version.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, &s, "v1", "status")
	return s, err
}

// ImportHardware sends hardware tokens read from a PSKC file, to be kept unassigned (dryRun:
// only checked). A refusal is an *APIError whose Invalid lists the refused tokens by their place
// in toks (LineError.Line, from 1); nothing was imported then.
func (c *Client) ImportHardware(ctx context.Context, toks []token.Hardware, dryRun bool) (registryapi.HardwareReport, error) {
	var r registryapi.HardwareReport
	body, err := json.Marshal(registryapi.HardwareImport{Tokens: toks, DryRun: dryRun})
	if err != nil {
		return r, err
	}
	defer clear(body)
	err = c.call(ctx, request{method: http.MethodPost, path: admin("import", "hardware"), body: bytes.NewReader(body),
		ctype: "application/json", change: true, long: true}, &r)
	return r, err
}

// Hardware returns the unassigned hardware tokens.
func (c *Client) Hardware(ctx context.Context) ([]token.HardwareInfo, error) {
	var out []token.HardwareInfo
	err := c.get(ctx, &out, admin("hardware")...)
	return out, err
}

// AssignHardware gives the unassigned hardware token serial to user, if code (from the device)
// verifies; the answer's Status says whether it did.
func (c *Client) AssignHardware(ctx context.Context, user, serial, code string) (registryapi.HardwareAssigned, error) {
	var r registryapi.HardwareAssigned
	err := c.send(ctx, http.MethodPost, registryapi.HardwareAssign{Serial: serial, Code: code}, &r, admin(pUsers, user, "hardware")...)
	return r, err
}

// UnassignHardware takes user's hardware token id back: it is unassigned again.
func (c *Client) UnassignHardware(ctx context.Context, user, id string) (token.Info, error) {
	var t token.Info
	err := c.send(ctx, http.MethodPost, struct{}{}, &t, admin(pUsers, user, pTokens, id, "unassign")...)
	return t, err
}
