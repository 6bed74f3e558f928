package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/clock"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// maxEnrollAnswer bounds an enrollment answer of the registry.
const maxEnrollAnswer = 64 << 10

// RegistryError is an answer of the registry's enrollment endpoints that is not a refusal (a
// status other than 400, 401, 403, 404, 409, 413 and 429): the HTTP status and the registry's
// sentence (control characters replaced), for the log. It never holds a secret: the registry
// puts none in an error. Refusals are *refusal.Error (refusalKind).
type RegistryError struct {
	Status  int
	Message string
}

func (e *RegistryError) Error() string {
	return fmt.Sprintf("registry answered %d: %s", e.Status, e.Message)
}

// EnrollClient calls the registry's /v1/enroll/* endpoints on behalf of users of this node,
// with the node's credential or client certificate and the pinned CA. Errors are a
// *RegistryError for a refusal, anything else for a registry that cannot be reached or answers
// nonsense.
type EnrollClient struct{ c *client }

// NewEnrollClient checks the [sync] files and returns a client; timeout bounds waiting for an
// answer's headers (the caller's context bounds the whole call).
func NewEnrollClient(s config.Sync, timeout time.Duration, version string) (*EnrollClient, error) {
	c, err := newClient(s, timeout, "totp-syncd/"+version, clock.Now)
	if err != nil {
		return nil, err
	}
	return &EnrollClient{c: c}, nil
}

// EnrollClient returns an enrollment client that calls the replica the syncer follows.
func (s *Syncer) EnrollClient() *EnrollClient { return &EnrollClient{c: s.client} }

// Close drops idle connections.
func (e *EnrollClient) Close() { e.c.close() }

// Begin starts a pending token named name for user; proof may be "".
func (e *EnrollClient) Begin(ctx context.Context, user, name, proof string) (registryapi.Enrollment, error) {
	var a registryapi.Enrollment
	err := e.post(ctx, registryapi.PathEnrollBegin, registryapi.BeginRequest{User: user, Name: name, Proof: proof}, &a)
	if err == nil && (a.ID == "" || a.URI == "") {
		err = errors.New("POST /v1/enroll/begin: answer without id or uri")
	}
	return a, err
}

// Finish checks the first code of user's pending token id.
func (e *EnrollClient) Finish(ctx context.Context, user, id, code string) (registryapi.FinishResult, error) {
	var a registryapi.FinishResult
	err := e.post(ctx, registryapi.PathEnrollFinish, registryapi.FinishRequest{User: user, ID: id, Code: code}, &a)
	if err == nil && a.Status == "" {
		err = errors.New("POST /v1/enroll/finish: answer without status")
	}
	return a, err
}

// Rename renames user's token id.
func (e *EnrollClient) Rename(ctx context.Context, user, id, name string) error {
	return e.post(ctx, registryapi.PathEnrollRename, registryapi.RenameRequest{User: user, ID: id, Name: name}, nil)
}

// Remove removes user's token id; proof is a current code or a backup code.
func (e *EnrollClient) Remove(ctx context.Context, user, id, proof string) error {
	return e.post(ctx, registryapi.PathEnrollRemove, registryapi.RemoveRequest{User: user, ID: id, Proof: proof}, nil)
}

// BackupCodes replaces user's backup codes and returns the new ones.
func (e *EnrollClient) BackupCodes(ctx context.Context, user, proof string) ([]string, error) {
	var a registryapi.BackupCodes
	err := e.post(ctx, registryapi.PathEnrollBackupCodes, registryapi.ProofRequest{User: user, Proof: proof}, &a)
	if err == nil && len(a.Codes) == 0 {
		err = errors.New("POST /v1/enroll/backup-codes: answer without codes")
	}
	return a.Codes, err
}

// post sends body as JSON and decodes a 200 answer into out (nil: ignored).
func (e *EnrollClient) post(ctx context.Context, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := e.c.doMoving(ctx, http.MethodPost, path, nil, b)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrollAnswer+1))
	if err != nil {
		return fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ea registryapi.ErrorAnswer
		msg := ""
		if json.Unmarshal(data, &ea) == nil {
			msg = ea.Error
		}
		msg = cleanSentence(msg)
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		if kind, ok := refusalKind(resp.StatusCode); ok {
			return &refusal.Error{Kind: kind, Message: msg}
		}
		return &RegistryError{Status: resp.StatusCode, Message: msg}
	}
	if len(data) > maxEnrollAnswer {
		return fmt.Errorf("POST %s: answer larger than %d bytes", path, maxEnrollAnswer)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		// The answer may hold a secret: the error names none of it.
		return fmt.Errorf("POST %s: answer is not the expected JSON", path)
	}
	return nil
}

// cleanSentence makes a sentence from the registry safe to print (token.Clean) and bounds its
// length.
func cleanSentence(s string) string {
	s = token.Clean(strings.TrimSpace(s))
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "")
	}
	return s
}

// Bootstrap asks the registry to mail user a one-time code for a first token (bootstrap =
// "mail") and returns the code's expiry.
func (e *EnrollClient) Bootstrap(ctx context.Context, user string) (time.Time, error) {
	var a registryapi.BootstrapSent
	err := e.post(ctx, registryapi.PathEnrollBootstrap, registryapi.BootstrapRequest{User: user}, &a)
	if err == nil && !a.Sent {
		err = errors.New("POST /v1/enroll/bootstrap: answer without sent")
	}
	return a.Expires, err
}

// refusalKind is the kind of refusal an HTTP status of the registry means (package refusal's
// table, read back), false for a status that is no refusal.
func refusalKind(status int) (refusal.Kind, bool) {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return refusal.Invalid, true
	case http.StatusUnauthorized, http.StatusForbidden:
		return refusal.Refused, true
	case http.StatusNotFound:
		return refusal.NotFound, true
	case http.StatusConflict:
		return refusal.Conflict, true
	case http.StatusTooManyRequests:
		return refusal.TooMany, true
	}
	return "", false
}
