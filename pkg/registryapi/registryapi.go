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
