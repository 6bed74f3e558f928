// Package refusal is the error meant for a person (STYLE.md rule 4): a service that refuses a
// request returns an *Error, whose Message is one plain sentence for the user or admin behind it
// (never a secret, a code or an internal detail), and whose Kind says what sort of refusal it is.
// Every other error is internal: it goes to the log, and the person sees a generic sentence.
//
// Each transport maps Kind to its own form in one place: the registry to an HTTP status and
// {"error": Message} (package registry), totp-syncd to a D-Bus error name of package syncbus
// (package busapi) and to the same name on its root socket; the registry's clients map back
// (package nodesync). The standalone enrollment authority (package localenroll) refuses with it
// too. This package has no dependencies, so the helper, the CLIs and the services can all use it.
package refusal

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what sort of refusal an Error is.
type Kind string

// Kinds of refusal, with the HTTP status and D-Bus error the transports use.
const (
	Invalid     Kind = "invalid"     // a malformed request: 400, Error.Invalid
	Refused     Kind = "refused"     // not allowed, or a proof is missing or wrong: 403, Error.Refused
	NotFound    Kind = "not_found"   // no such user or token (of the caller): 404, Error.NotFound
	Conflict    Kind = "conflict"    // the request collides with the state: 409, Error.Refused
	TooMany     Kind = "too_many"    // too many tries; RetryAfter says when: 429, Error.Refused
	Unavailable Kind = "unavailable" // cannot be done now; try later: 503, Error.Unavailable
)

// HTTPStatus is the HTTP status of a refusal of kind k (the registry's endpoints, the portal).
// The numbers are written out: importing net/http for its constants would link an HTTP stack
// into the helper and the user's CLI (cmd/links_test.go).
func (k Kind) HTTPStatus() int {
	switch k {
	case Invalid:
		return 400 // Bad Request
	case Refused:
		return 403 // Forbidden
	case NotFound:
		return 404 // Not Found
	case Conflict:
		return 409 // Conflict
	case TooMany:
		return 429 // Too Many Requests
	default:
		return 503 // Service Unavailable
	}
}

// Error is a refusal meant for a person.
type Error struct {
	Kind       Kind
	Message    string        // one plain sentence, no secret
	RetryAfter time.Duration // TooMany: when to try again (0 unknown)
}

func (e *Error) Error() string { return e.Message }

// New is a refusal of kind with a sentence.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// As is the refusal in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var r *Error
	ok := errors.As(err, &r)
	return r, ok
}
