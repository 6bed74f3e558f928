package nodesync

import (
	"net/http"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/refusal"
)

func TestRefusalKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		want   refusal.Kind
		ok     bool
	}{
		{http.StatusBadRequest, refusal.Invalid, true},
		{http.StatusRequestEntityTooLarge, refusal.Invalid, true},
		{http.StatusUnauthorized, refusal.Refused, true},
		{http.StatusForbidden, refusal.Refused, true},
		{http.StatusNotFound, refusal.NotFound, true},
		{http.StatusConflict, refusal.Conflict, true},
		{http.StatusTooManyRequests, refusal.TooMany, true},
		{http.StatusInternalServerError, "", false},
		{http.StatusBadGateway, "", false},
	}
	for _, tt := range tests {
		if got, ok := refusalKind(tt.status); got != tt.want || ok != tt.ok {
			t.Errorf("refusalKind(%d) = %q, %v, want %q, %v", tt.status, got, ok, tt.want, tt.ok)
		}
	}
}
