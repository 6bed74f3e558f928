package registry

import (
	"testing"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// The enrollment decoders take bodies from nodes: they must never panic, and what they accept
// must be valid.

func FuzzEnrollRequests(f *testing.F) {
	for _, s := range []string{`{"user":"ann","name":"phone","proof":"123 456"}`, `{"user":"ann","id":"0a1b2c3d","code":"123456"}`,
		`{"user":"a/b"}`, `{"user":"ann","proof":"\u0000"}`, `{}`, `[`, `{"user":"ann","name":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := parseEnroll[beginRequest](b); err == nil && (!validName(q.User, maxNameLen) || (q.Name != "" && token.CheckName(q.Name) != nil) || len(q.Proof) > maxAnswerLength) {
			t.Errorf("parseBeginRequest(%q) accepted %+v", b, q)
		}
		if q, err := parseEnroll[finishRequest](b); err == nil && (!validName(q.User, maxNameLen) || !validIdent(q.ID, 64) || len(q.Code) > maxAnswerLength) {
			t.Errorf("parseFinishRequest(%q) accepted %+v", b, q)
		}
		if q, err := parseEnroll[renameRequest](b); err == nil && (!validIdent(q.ID, 64) || token.CheckName(q.Name) != nil) {
			t.Errorf("parseRenameRequest(%q) accepted %+v", b, q)
		}
		if q, err := parseEnroll[removeRequest](b); err == nil && (!validIdent(q.ID, 64) || len(q.Proof) > maxAnswerLength) {
			t.Errorf("parseRemoveRequest(%q) accepted %+v", b, q)
		}
		if q, err := parseEnroll[proofRequest](b); err == nil && !validName(q.User, maxNameLen) {
			t.Errorf("parseProofRequest(%q) accepted %+v", b, q)
		}
		if q, err := parseEnroll[bootstrapRequest](b); err == nil && !validName(q.User, maxNameLen) {
			t.Errorf("parseBootstrapRequest(%q) accepted %+v", b, q)
		}
	})
}
