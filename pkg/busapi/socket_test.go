package busapi

import (
	"testing"

	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
)

// rootsock writes out the error names it answers with itself, to link no godbus.
func TestRootSocketErrorNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ got, want string }{
		{rootsock.ErrUnavailableName, syncbus.ErrUnavailable},
		{rootsock.ErrInvalidName, syncbus.ErrInvalid},
	} {
		if tt.got != tt.want {
			t.Errorf("rootsock error name %q, want %q", tt.got, tt.want)
		}
	}
}
