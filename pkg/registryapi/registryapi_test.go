package registryapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// The registry sends an added token flat: the token's fields beside secret and uri.
func TestAddedTokenWire(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	a := AddedToken{Info: token.Info{User: "alice", ID: "0a1b", Name: "phone", Algorithm: "SHA1", Digits: 6,
		Period: 30, State: "active", Created: created}, Secret: "JBSWY3DPEHPK3PXP", URI: "otpauth://totp/x"}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"user":"alice","id":"0a1b","name":"phone","algorithm":"SHA1","digits":6,"period":30,"state":"active",` +
		`"created":"2026-12-05T10:00:00Z","secret":"JBSWY3DPEHPK3PXP","uri":"otpauth://totp/x"}`
	if string(b) != want {
		t.Errorf("json.Marshal(AddedToken) = %s, want %s", b, want)
	}
	tests := []struct {
		name, in string
	}{
		{"flat", want},
		{"nested", `{"token":{"user":"alice","id":"0a1b","name":"phone","algorithm":"SHA1","digits":6,"period":30,` +
			`"state":"active","created":"2026-12-05T10:00:00Z"},"secret":"JBSWY3DPEHPK3PXP","uri":"otpauth://totp/x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got AddedToken
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil || got != a {
				t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", tt.in, got, err, a)
			}
		})
	}
}
