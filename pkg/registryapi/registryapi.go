// Package registryapi is the JSON contract of totp-registry's HTTP API, the one both sides use:
// the registry (package registry) answers with these types and its clients (package adminclient
// for totp-admin --registry, package nodesync for totp-syncd's enrollment calls) send and read
// them. It holds plain types, paths and status words only: no HTTP code.
//
// The sync protocol (snapshot and watch frames) is package syncframe's; docs/sync-protocol.md
// describes both.
package registryapi

import (
	"encoding/json"
	"time"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Paths of the enrollment endpoints (POST, node credential). Each takes a JSON body and answers
// 200 with the type named, or an ErrorAnswer.
const (
	PathEnrollBegin       = "/v1/enroll/begin"        // BeginRequest -> Enrollment
	PathEnrollFinish      = "/v1/enroll/finish"       // FinishRequest -> FinishResult
	PathEnrollRename      = "/v1/enroll/rename"       // RenameRequest -> {}
	PathEnrollRemove      = "/v1/enroll/remove"       // RemoveRequest -> {}
	PathEnrollBackupCodes = "/v1/enroll/backup-codes" // ProofRequest -> BackupCodes
	PathEnrollBootstrap   = "/v1/enroll/bootstrap"    // BootstrapRequest -> BootstrapSent
)

// Bodies a node posts besides the sync stream (docs/sync-protocol.md).

// Ack is POST /v1/sync/ack's body: what the node applied.
type Ack struct {
	Rev     int64  `json:"rev"`
	Count   int64  `json:"count"`
	Digest  string `json:"digest"`
	LagMS   int64  `json:"lag_ms"`
	Version string `json:"version"`
	// Audit is the highest audit head the node has seen in a bookmark, kept in its tokens.db.
	Audit *syncframe.Anchor `json:"audit,omitempty"`
}

// UsedReport is POST /v1/sync/used's body: backup codes and passcodes the node accepted.
type UsedReport struct {
	Used []UsedMark `json:"used"`
}

// UsedMark is one used record: its key ("b/USER/ID") and when it was used.
type UsedMark struct {
	Key string    `json:"key"`
	At  time.Time `json:"at"`
}

// PathSyncLogins is where a node reports what its logins did (POST, node credential): a
// LoginReport answered with LoginAnswer, one result per event in order.
const PathSyncLogins = "/v1/sync/logins"

// MaxLoginEvents bounds one LoginReport.
const MaxLoginEvents = 1000

// LoginReport is POST /v1/sync/logins's body (token.LoginEvent says what each event is). A
// login that accepts a code sends its claim alone and waits for the answer (a short bound);
// claims made while the registry could not be asked (Offline) and failures follow in batches.
type LoginReport struct {
	Events []token.LoginEvent `json:"events"`
}

// LoginAnswer answers a LoginReport.
type LoginAnswer struct {
	Results []LoginResult `json:"results"`
}

// LoginResult is the registry's word on one event. For a claim: Claimed, or not, with the claim
// that holds the step (By, At: where and when the code was accepted before). For a failure:
// Failures is the user's count after it. Unknown: the registry has no such user (or none in the
// node's scope); nothing was recorded.
type LoginResult struct {
	Claimed  bool      `json:"claimed,omitempty"`
	By       string    `json:"by,omitempty"`
	At       time.Time `json:"at,omitzero"`
	Failures int       `json:"failures,omitempty"`
	Unknown  bool      `json:"unknown,omitempty"`
}

// ErrorAnswer is the body of every refusal: one plain sentence meant for the person behind the
// request (no secret), with the HTTP status saying its kind (400 invalid, 401/403 refused, 404 not
// found, 409 conflict, 429 too many tries, with Retry-After).
type ErrorAnswer struct {
	Error string `json:"error"`
}

// BeginRequest starts a pending token for User; Proof ("" for a first token) is a current code, a
// backup code or a bootstrap code.
type BeginRequest struct {
	User  string `json:"user"`
	Name  string `json:"name"`
	Proof string `json:"proof"`
}

// FinishRequest checks the first code of User's pending token ID.
type FinishRequest struct {
	User string `json:"user"`
	ID   string `json:"id"`
	Code string `json:"code"`
}

// RenameRequest renames User's token ID.
type RenameRequest struct {
	User string `json:"user"`
	ID   string `json:"id"`
	Name string `json:"name"`
}

// RemoveRequest removes User's token ID, with a proof.
type RemoveRequest struct {
	User  string `json:"user"`
	ID    string `json:"id"`
	Proof string `json:"proof"`
}

// ProofRequest is a request of User with only a proof (new backup codes).
type ProofRequest struct {
	User  string `json:"user"`
	Proof string `json:"proof"`
}

// BootstrapRequest asks for a mailed one-time code for User's first token.
type BootstrapRequest struct {
	User string `json:"user"`
}

// Enrollment is a pending token, the answer to begin. Secret and URI are secrets, shown once.
type Enrollment struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	URI     string    `json:"uri"`
	Expires time.Time `json:"expires"`
}

// Statuses of FinishResult.
const (
	StatusActive    = "active"     // the code was right: the token is active
	StatusWrongCode = "wrong_code" // try another code
	StatusClockSkew = "clock_skew" // right for another time: SkewS says how far off
	StatusExpired   = "expired"    // the pending token is gone
)

// FinishResult is the answer to finish. BackupCodes (first token only) are secrets.
type FinishResult struct {
	Status      string   `json:"status"` // a Status* word
	SkewS       int      `json:"skew_s"`
	BackupCodes []string `json:"backup_codes,omitempty"`
}

// BackupCodes is the answer to backup-codes: the new codes (secrets).
type BackupCodes struct {
	Codes []string `json:"codes"`
}

// BootstrapSent is the answer to bootstrap.
type BootstrapSent struct {
	Sent    bool      `json:"sent"`
	Expires time.Time `json:"expires"`
}

// AddedToken is the answer to adding a token through the admin API. Secret (base32) and URI are
// set only when the registry generated the secret; they are shown once and never again.
type AddedToken struct {
	token.Info
	Secret string `json:"secret,omitempty"`
	URI    string `json:"uri,omitempty"`
}

// UnmarshalJSON reads the token's fields at the top level, or inside "token" beside "secret" and
// "uri".
func (a *AddedToken) UnmarshalJSON(data []byte) error {
	var flat struct {
		token.Info
		Secret string      `json:"secret"`
		URI    string      `json:"uri"`
		Nested *token.Info `json:"token"`
	}
	if err := json.Unmarshal(data, &flat); err != nil {
		return err
	}
	a.Info, a.Secret, a.URI = flat.Info, flat.Secret, flat.URI
	if flat.Nested != nil {
		a.Info = *flat.Nested
	}
	return nil
}

// Outcome is part of the answer of every admin request that may find its desired state already
// holding (adding a user or node that exists as asked, setting what is already set, unlocking a
// user who is not locked): Changed is false then, and the registry wrote nothing (no revision, no
// audit record, no notice to the user). totp-admin says "unchanged" and exits 0, and its --json
// answers carry the same "changed" (docs/registry-admin.md, "Running a command twice").
// A client reading an answer sets Changed true before decoding, so that an answer without it
// (from an older registry) counts as a change.
type Outcome struct {
	Changed bool `json:"changed"`
}

// UserResult is the answer to adding or changing a user.
type UserResult struct {
	User
	Outcome
}

// TokenResult is the answer to changing or removing a token: the token as it is now (removed: as
// it was).
type TokenResult struct {
	token.Info
	Outcome
}

// User is a registry user as the admin API shows it.
type User struct {
	Name   string   `json:"name"`
	Mail   string   `json:"mail,omitempty"`
	Scopes []string `json:"scopes"`
	// Tokens and BackupCodes count the user's records (backup codes include unexpired
	// helpdesk passcodes).
	Tokens      int       `json:"tokens"`
	BackupCodes int       `json:"backup_codes"`
	Created     time.Time `json:"created"`
}

// Removed is what a reset or a user's removal took away.
type Removed struct {
	Name        string `json:"name"`
	Tokens      int    `json:"tokens"`
	BackupCodes int    `json:"backup_codes"`
	Outcome
}

// Unlocked is the answer of an admin unlock: the failed proofs that were cleared.
type Unlocked struct {
	Name     string `json:"name"`
	Failures int    `json:"failures"`
	// SignInFailures are the failed portal sign-ins by code cleared (registry only).
	SignInFailures int `json:"sign_in_failures,omitempty"`
	Outcome
}

// Passcode is a helpdesk one-time passcode, shown once.
type Passcode struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// Node is a login node as the registry knows it. The sync fields come from the node's last
// acknowledgement; they are zero when it has not acknowledged anything since the registry started.
type Node struct {
	Name    string    `json:"name"`
	Scope   string    `json:"scope"`
	Created time.Time `json:"created"`
	// AppliedRev is the registry revision the node applied, Count its record count there.
	AppliedRev int64 `json:"applied_rev"`
	Count      int64 `json:"count"`
	// DigestOK says whether the node's digest agreed with the registry's; nil when it was not
	// compared.
	DigestOK *bool `json:"digest_ok"`
	// LastContact is when the node was last heard from (zero: not since the registry started).
	LastContact time.Time `json:"last_contact,omitzero"`
	// LagMS is the delay the node reported for its last batch.
	LagMS int64 `json:"lag_ms"`
	// Behind is how many revisions the registry is ahead of AppliedRev.
	Behind int64 `json:"behind"`
	// Version is the node's totp-syncd version, Streams its open watch streams.
	Version string `json:"version,omitempty"`
	Streams int    `json:"streams"`
}

// NewNode is the answer to AddNode: the credential is shown once and never again. A node that
// exists in the scope asked for is unchanged, and its credential is not shown again (empty).
type NewNode struct {
	Name       string `json:"name"`
	Scope      string `json:"scope"`
	Credential string `json:"credential,omitempty"`
	Outcome
}

// RemovedNode is the answer to removing a node.
type RemovedNode struct {
	Name          string `json:"name"`
	StreamsClosed int    `json:"streams_closed"`
	Outcome
}

// GAResult is the answer to ImportGA.
type GAResult struct {
	ID    string     `json:"id"` // the token's id
	Token token.Info `json:"token"`
	// Already: the user had this token; nothing was written.
	Already bool `json:"already"`
	// Scratch is the number of scratch codes imported as backup codes, Replaced the number of
	// backup codes they replaced.
	Scratch  int      `json:"scratch"`
	Replaced int      `json:"replaced"`
	Ignored  []string `json:"ignored"`
}

// AuditCheck is the answer to VerifyAudit.
type AuditCheck struct {
	OK bool `json:"ok"`
	// Records is the number of records checked, Head the last one's hash.
	Records int64  `json:"records"`
	Head    string `json:"head,omitempty"`
	// BadSeq is the first record that breaks the chain and Error says how, when OK is false.
	BadSeq int64  `json:"bad_seq,omitempty"`
	Error  string `json:"error,omitempty"`
	// Nodes are the nodes that reported an audit head (an anchor) the chain does not contain:
	// the chain was truncated or rewritten after they saw it.
	Nodes []string `json:"nodes,omitempty"`
	// Anchors is the number of node anchors checked (those this registry process has received).
	Anchors int `json:"anchors"`
}

// CompactResult is the answer to Compact.
type CompactResult struct {
	Compacted int64 `json:"compacted"`
	Revision  int64 `json:"revision"`
}

// AdminIdentity is the answer of GET /v1/admin/whoami: the admin of the token, its role
// (read-only, helpdesk or full), its scopes (none: every scope) and its expiry (none: never).
type AdminIdentity struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Scopes  []string   `json:"scopes,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// Status is the answer of the unauthenticated GET /v1/status.
type Status struct {
	Revision  int64  `json:"revision"`
	Compacted int64  `json:"compacted"`
	Version   string `json:"version"`
}

// HardwareImport is the body of POST /v1/admin/import/hardware: hardware tokens read from a
// vendor's PSKC file (totp-admin parses and decrypts it; the pre-shared key never leaves the
// admin's host), to be kept unassigned by serial. With DryRun nothing is written.
type HardwareImport struct {
	Tokens []token.Hardware `json:"tokens"`
	DryRun bool             `json:"dry_run,omitempty"`
	Reason string           `json:"reason,omitempty"`
}

// HardwareProblem is a token of a HardwareImport that cannot be imported. Line is its place in
// Tokens, from 1 (named as an import's invalid line is, so that one error shape serves both).
type HardwareProblem struct {
	Line   int    `json:"line"`
	Serial string `json:"serial"`
	Msg    string `json:"msg"`
}

// HardwareReport is the answer to a HardwareImport. With any Invalid token nothing was written
// (status 400, Error set).
type HardwareReport struct {
	Imported []token.HardwareInfo `json:"imported"`
	Already  []string             `json:"already"`
	Invalid  []HardwareProblem    `json:"invalid"`
	Error    string               `json:"error,omitempty"`
}

// HardwareAssign is the body of POST /v1/admin/users/{name}/hardware: the serial of an
// unassigned hardware token and the code its device shows, which must verify before the token
// becomes the user's (active; the code is used up).
type HardwareAssign struct {
	Serial string `json:"serial"`
	Code   string `json:"code"`
	Reason string `json:"reason,omitempty"`
}

// HardwareAssigned is the answer to a HardwareAssign: the user's new token, or why the code was
// not accepted (Status: StatusActive, StatusWrongCode or StatusClockSkew with SkewSeconds).
type HardwareAssigned struct {
	Status      string     `json:"status"`
	Token       token.Info `json:"token,omitzero"`
	SkewSeconds int        `json:"skew_seconds,omitempty"`
}
