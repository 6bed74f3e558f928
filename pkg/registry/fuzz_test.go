package registry

import (
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// The admin API's decoders take bodies from the network: they must never panic, and what they
// accept must be valid.

func FuzzUserRequest(f *testing.F) {
	for _, s := range []string{`{"name":"ann","mail":"a@b.c","scopes":["x","y"]}`, `{"name":"a/b"}`, `{}`, `[`, `{"name":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseUserRequest(b)
		if err != nil {
			return
		}
		if !validName(q.Name, maxNameLen) || token.ValidUser(q.Name) != nil || len(q.Scopes) > maxScopes {
			t.Errorf("parseUserRequest(%q) accepted %+v", b, q)
		}
		for _, s := range q.Scopes {
			if !validScope(s) {
				t.Errorf("parseUserRequest(%q) accepted scope %q", b, s)
			}
		}
	})
}

func FuzzUserPatch(f *testing.F) {
	for _, s := range []string{`{"mail":"a@b.c"}`, `{"scopes":[]}`, `{"scopes":null}`, `{"mail":"<x>"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseUserPatch(b)
		if err == nil && q.Scopes != nil {
			for _, s := range *q.Scopes {
				if !validScope(s) {
					t.Errorf("parseUserPatch(%q) accepted scope %q", b, s)
				}
			}
		}
	})
}

func FuzzTokenRequest(f *testing.F) {
	for _, s := range []string{`{"name":"phone","secret":"JBSWY3DPEHPK3PXP","algorithm":"SHA256","digits":8,"period":60}`,
		`{"state":"pending"}`, `{"digits":-1}`, `{"secret":"a b c"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseTokenRequest(b)
		if err != nil {
			return
		}
		if err := q.params.Validate(); err != nil {
			t.Errorf("parseTokenRequest(%q) accepted params %v", b, err)
		}
		tok := token.Token{User: "u", ID: "i", Name: "n", Algorithm: q.params.Algorithm, Digits: q.params.Digits,
			Period: q.params.Period, Secret: q.secret, State: token.State(q.State)}
		if tok.Secret == nil {
			tok.Secret = make([]byte, 20)
		}
		if q.Name != "" {
			tok.Name = q.Name
		}
		if err := tok.Validate(); err != nil {
			t.Errorf("parseTokenRequest(%q) accepted a token that does not validate: %v", b, err)
		}
	})
}

func FuzzTokenPatch(f *testing.F) {
	for _, s := range []string{`{"state":"active"}`, `{"name":"x"}`, `{"state":"pending"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseTokenPatch(b)
		if err == nil && q.State != nil && *q.State != "active" && *q.State != "disabled" {
			t.Errorf("parseTokenPatch(%q) accepted state %q", b, *q.State)
		}
	})
}

func FuzzNodeRequest(f *testing.F) {
	for _, s := range []string{`{"name":"login1.hpc","scope":"hpc"}`, `{"name":"a b","scope":"x"}`, `{"name":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseNodeRequest(b)
		if err == nil && (!validNodeName(q.Name) || !validScope(q.Scope)) {
			t.Errorf("parseNodeRequest(%q) accepted %+v", b, q)
		}
	})
}

func FuzzPasscodeRequest(f *testing.F) {
	for _, s := range []string{`{"ttl":"1h"}`, ``, `{"ttl":"-1s"}`, `{"ttl":"9999999h"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parsePasscodeRequest(b)
		if err == nil && (q.ttl < passcodeMin || q.ttl > passcodeMax) {
			t.Errorf("parsePasscodeRequest(%q) accepted ttl %s", b, q.ttl)
		}
	})
}

func FuzzAck(f *testing.F) {
	for _, s := range []string{`{"rev":1,"count":2,"digest":"` + emptyDigest + `","lag_ms":3,"version":"v"}`, `{"rev":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAck(b)
		if err == nil && (a.Rev < 0 || a.Count < 0 || a.LagMS < 0) {
			t.Errorf("parseAck(%q) accepted %+v", b, a)
		}
	})
}

func FuzzCompactRequest(f *testing.F) {
	f.Add([]byte(`{"keep":10}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseCompactRequest(b)
		if err == nil && q.Keep < 0 {
			t.Errorf("parseCompactRequest(%q) accepted %+v", b, q)
		}
	})
}

func FuzzLoginReport(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"kind":"claim","user":"ann","token":"t1","step":5,"at":"2026-12-05T12:00:00Z"}]}`,
		`{"events":[{"kind":"failure","user":"ann","at":"2026-12-05T12:00:00Z","offline":true}]}`,
		`{"events":[]}`, `{"events":[{"kind":"claim","user":"a/b","token":"../x","step":1,"at":"2026-12-05T12:00:00Z"}]}`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := parseLogins(b)
		if err != nil {
			return
		}
		if len(evs) == 0 {
			t.Errorf("parseLogins(%q) accepted no events", b)
		}
		for _, e := range evs {
			ok := validName(e.User, maxNameLen) && !e.At.IsZero()
			switch e.Kind {
			case token.EventClaim:
				ok = ok && validName(e.Token, maxClaimID) && e.Step > 0
			case token.EventFailure:
				ok = ok && e.Token == "" && e.Step == 0
			default:
				ok = false
			}
			if !ok {
				t.Errorf("parseLogins(%q) accepted %+v", b, e)
			}
		}
	})
}

func FuzzParseAdminTokens(f *testing.F) {
	h := strings.Repeat("ab", 32)
	for _, s := range []string{"alice " + h + "\n", "# c\nbob " + h + " role=helpdesk scopes=c1,c2 expires=2027-06-30\n",
		"x " + h + " role=\n", "x " + h + " scopes=,\n", "x " + h + " expires=2027-06-30T12:00:00+02:00 role=read-only\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		toks, err := ParseAdminTokens(b)
		if err != nil {
			return
		}
		for _, a := range toks {
			if !validName(a.Name, 64) || a.Role < RoleReadOnly || a.Role > RoleFull {
				t.Errorf("ParseAdminTokens(%q) accepted %+v", b, a)
			}
			if a.Scopes != nil && len(a.Scopes) == 0 {
				t.Errorf("ParseAdminTokens(%q) gave an empty, non-nil scope list: no scope at all", b)
			}
			for _, s := range a.Scopes {
				if !validScope(s) {
					t.Errorf("ParseAdminTokens(%q) accepted scope %q", b, s)
				}
			}
		}
	})
}
