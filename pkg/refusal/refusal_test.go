package refusal

import (
	"net/http"
	"testing"
)

// The statuses are written as numbers in HTTPStatus; here they meet net/http's names.
func TestHTTPStatus(t *testing.T) {
	for k, want := range map[Kind]int{
		Invalid:     http.StatusBadRequest,
		Refused:     http.StatusForbidden,
		NotFound:    http.StatusNotFound,
		Conflict:    http.StatusConflict,
		TooMany:     http.StatusTooManyRequests,
		Unavailable: http.StatusServiceUnavailable,
		"":          http.StatusServiceUnavailable,
	} {
		if got := k.HTTPStatus(); got != want {
			t.Errorf("Kind(%q).HTTPStatus() = %d, want %d", k, got, want)
		}
	}
}
