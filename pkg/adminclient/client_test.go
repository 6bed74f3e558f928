package adminclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

const adminToken = "s3cret-admin-token"

// testCA is a throwaway CA with a server certificate for 127.0.0.1 and localhost.
type testCA struct {
	caPEM  []byte
	server tls.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

func (ca *testCA) file(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// serve starts an HTTPS server with the CA's certificate and returns a client pinned to the CA.
func serve(t *testing.T, ca *testCA, h http.Handler, o Options) *Client {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-CA cases end in handshake errors
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	if o.Token == "" {
		o.Token = adminToken
	}
	if o.CAFile == "" {
		o.CAFile = ca.file(t)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// seen is one request as the fake registry saw it.
type seen struct {
	Method, Path, Query, Auth, Reason, Type string
	Body                                    string
}

// fake answers every request with status and body and records what it saw.
func fake(t *testing.T, status int, body string, got *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*got = seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), Reason: r.Header.Get("X-Reason"),
			Type: r.Header.Get("Content-Type"), Body: string(b)}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

func TestRequests(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	ctx := context.Background()
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	yes := true
	mail := "a@example.org"
	scopes := []string{"c1"}
	active := Active
	tests := []struct {
		name     string
		status   int
		answer   string
		call     func(*Client) (any, error)
		want     seen // Auth is checked separately
		wantBody any  // JSON the request body must equal (nil: no body)
		wantOut  any
	}{
		{"add user", 201, `{"name":"alice","mail":"a@example.org","scopes":["c1"],"created":"2025-01-02T03:04:05Z"}`,
			func(c *Client) (any, error) {
				return c.AddUser(ctx, NewUser{Name: "alice", Mail: mail, Scopes: scopes})
			},
			seen{Method: "POST", Path: "/v1/admin/users", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"name": "alice", "mail": mail, "scopes": []any{"c1"}},
			UserResult{User: User{Name: "alice", Mail: mail, Scopes: scopes, Created: created}, Outcome: changed}},
		{"add user, exists as asked", 200, `{"name":"alice","scopes":["c1"],"changed":false}`,
			func(c *Client) (any, error) { return c.AddUser(ctx, NewUser{Name: "alice", Scopes: scopes}) },
			seen{Method: "POST", Path: "/v1/admin/users", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"name": "alice", "scopes": []any{"c1"}},
			UserResult{User: User{Name: "alice", Scopes: scopes}}},
		{"list users (array)", 200, `[{"name":"alice","scopes":[],"tokens":2}]`,
			func(c *Client) (any, error) { return c.Users(ctx) },
			seen{Method: "GET", Path: "/v1/admin/users"}, nil,
			[]User{{Name: "alice", Scopes: []string{}, Tokens: 2}}},
		{"list users (object)", 200, `{"users":[{"name":"bob","scopes":["c1"],"tokens":0}]}`,
			func(c *Client) (any, error) { return c.Users(ctx) },
			seen{Method: "GET", Path: "/v1/admin/users"}, nil,
			[]User{{Name: "bob", Scopes: scopes}}},
		{"show user, escaped name", 200, `{"name":"a b%","scopes":[]}`,
			func(c *Client) (any, error) { return c.User(ctx, "a b%") },
			seen{Method: "GET", Path: "/v1/admin/users/a%20b%25"}, nil,
			User{Name: "a b%", Scopes: []string{}}},
		{"set scopes only", 200, `{"name":"alice","scopes":["c1"]}`,
			func(c *Client) (any, error) { return c.UpdateUser(ctx, "alice", UserChange{Scopes: &scopes}) },
			seen{Method: "PATCH", Path: "/v1/admin/users/alice", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"scopes": []any{"c1"}},
			UserResult{User: User{Name: "alice", Scopes: scopes}, Outcome: changed}},
		{"remove user", 200, `{"name":"alice","tokens":1,"backup_codes":10}`,
			func(c *Client) (any, error) { return c.RemoveUser(ctx, "alice") },
			seen{Method: "DELETE", Path: "/v1/admin/users/alice", Reason: "ticket 42"}, nil,
			Removed{Name: "alice", Tokens: 1, BackupCodes: 10, Outcome: changed}},
		{"list tokens", 200, `{"tokens":[{"user":"alice","id":"0a1b2c3d","name":"phone","algorithm":"SHA1","digits":6,"period":30,"state":"active"}]}`,
			func(c *Client) (any, error) { return c.Tokens(ctx, "alice") },
			seen{Method: "GET", Path: "/v1/admin/users/alice/tokens"}, nil,
			[]token.Info{{User: "alice", ID: "0a1b2c3d", Name: "phone", Algorithm: "SHA1", Digits: 6, Period: 30, State: "active"}}},
		{"add token, generated secret", 201, `{"user":"alice","id":"0a1b2c3d","name":"token-1","algorithm":"SHA1","digits":6,"period":30,"state":"active","secret":"JBSWY3DPEHPK3PXP","uri":"otpauth://totp/x:alice?secret=JBSWY3DPEHPK3PXP"}`,
			func(c *Client) (any, error) {
				return c.AddToken(ctx, "alice", NewToken{Algorithm: "SHA1", Digits: 6, Period: 30, State: Active})
			},
			seen{Method: "POST", Path: "/v1/admin/users/alice/tokens", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"algorithm": "SHA1", "digits": 6.0, "period": 30.0, "state": "active"},
			registryapi.AddedToken{Info: token.Info{User: "alice", ID: "0a1b2c3d", Name: "token-1", Algorithm: "SHA1", Digits: 6, Period: 30, State: "active"},
				Secret: "JBSWY3DPEHPK3PXP", URI: "otpauth://totp/x:alice?secret=JBSWY3DPEHPK3PXP"}},
		{"add token, nested answer", 201, `{"token":{"user":"alice","id":"1","state":"active"},"secret":"S","uri":"U"}`,
			func(c *Client) (any, error) { return c.AddToken(ctx, "alice", NewToken{Secret: "JBSWY3DPEHPK3PXP"}) },
			seen{Method: "POST", Path: "/v1/admin/users/alice/tokens", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"secret": "JBSWY3DPEHPK3PXP"},
			registryapi.AddedToken{Info: token.Info{User: "alice", ID: "1", State: "active"}, Secret: "S", URI: "U"}},
		{"disable token", 200, `{"user":"alice","id":"1","state":"disabled"}`,
			func(c *Client) (any, error) {
				s := Disabled
				return c.UpdateToken(ctx, "alice", "1", TokenChange{State: &s})
			},
			seen{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/1", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"state": "disabled"},
			TokenResult{Info: token.Info{User: "alice", ID: "1", State: "disabled"}, Outcome: changed}},
		{"disable token, already disabled", 200, `{"user":"alice","id":"1","state":"disabled","changed":false}`,
			func(c *Client) (any, error) {
				s := Disabled
				return c.UpdateToken(ctx, "alice", "1", TokenChange{State: &s})
			},
			seen{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/1", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"state": "disabled"},
			TokenResult{Info: token.Info{User: "alice", ID: "1", State: "disabled"}}},
		{"enable token, empty answer", 200, "",
			func(c *Client) (any, error) {
				return c.UpdateToken(ctx, "alice", "1", TokenChange{State: &active})
			},
			seen{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/1", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"state": "active"}, TokenResult{Outcome: changed}},
		{"remove token", 200, `{"user":"alice","id":"1","name":"phone"}`,
			func(c *Client) (any, error) { return c.RemoveToken(ctx, "alice", "1") },
			seen{Method: "DELETE", Path: "/v1/admin/users/alice/tokens/1", Reason: "ticket 42"}, nil,
			TokenResult{Info: token.Info{User: "alice", ID: "1", Name: "phone"}, Outcome: changed}},
		{"reset", 200, `{"tokens":2,"backup_codes":10}`,
			func(c *Client) (any, error) { return c.Reset(ctx, "alice") },
			seen{Method: "POST", Path: "/v1/admin/users/alice/reset", Reason: "ticket 42", Type: "application/json"},
			map[string]any{}, Removed{Tokens: 2, BackupCodes: 10}},
		{"backup codes", 200, `{"codes":["aaaa-bbbb","cccc-dddd"]}`,
			func(c *Client) (any, error) { return c.BackupCodes(ctx, "alice") },
			seen{Method: "POST", Path: "/v1/admin/users/alice/backup-codes", Reason: "ticket 42", Type: "application/json"},
			map[string]any{}, []string{"aaaa-bbbb", "cccc-dddd"}},
		{"passcode", 200, `{"code":"12345678","expires":"2025-01-02T03:04:05Z"}`,
			func(c *Client) (any, error) { return c.Passcode(ctx, "alice", 90*time.Minute) },
			seen{Method: "POST", Path: "/v1/admin/users/alice/passcode", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"ttl": "1h30m0s"}, Passcode{Code: "12345678", Expires: created}},
		{"add node", 201, `{"name":"login1","scope":"c1","credential":"ptn1.login1.abc"}`,
			func(c *Client) (any, error) { return c.AddNode(ctx, "login1", "c1") },
			seen{Method: "POST", Path: "/v1/admin/nodes", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"name": "login1", "scope": "c1"},
			NewNode{Name: "login1", Scope: "c1", Credential: "ptn1.login1.abc", Outcome: changed}},
		{"add node, exists as asked", 200, `{"name":"login1","scope":"c1","changed":false}`,
			func(c *Client) (any, error) { return c.AddNode(ctx, "login1", "c1") },
			seen{Method: "POST", Path: "/v1/admin/nodes", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"name": "login1", "scope": "c1"},
			NewNode{Name: "login1", Scope: "c1"}},
		{"list nodes", 200, `[{"name":"login1","scope":"c1","applied_rev":7,"count":4,"digest_ok":true,"behind":3,"lag_ms":20,"streams":1,"last_contact":"2025-01-02T03:04:05Z"}]`,
			func(c *Client) (any, error) { return c.Nodes(ctx) },
			seen{Method: "GET", Path: "/v1/admin/nodes"}, nil,
			[]Node{{Name: "login1", Scope: "c1", AppliedRev: 7, Count: 4, DigestOK: &yes, Behind: 3, LagMS: 20, Streams: 1, LastContact: created}}},
		{"remove node", 204, "",
			func(c *Client) (any, error) { return nil, c.RemoveNode(ctx, "login1") },
			seen{Method: "DELETE", Path: "/v1/admin/nodes/login1", Reason: "ticket 42"}, nil, nil},
		{"import csv", 200, `{"added":2,"users_created":1,"duplicates":1,"revisions":1,"invalid":[{"Line":3,"Msg":"secret is not valid base32"}]}`,
			func(c *Client) (any, error) {
				return c.ImportCSV(ctx, strings.NewReader("alice,JBSWY3DPEHPK3PXP\n"),
					ImportOptions{Scope: "c1", SkipInvalid: true, Algorithm: "SHA256", Digits: 8, Period: 60})
			},
			seen{Method: "POST", Path: "/v1/admin/import/csv", Query: "algorithm=SHA256&digits=8&period=60&scope=c1&skip_invalid=1",
				Reason: "ticket 42", Type: "text/csv", Body: "alice,JBSWY3DPEHPK3PXP\n"}, nil,
			ImportResult{Added: 2, UsersCreated: 1, Duplicates: 1, Revisions: 1,
				Invalid: []LineError{{Line: 3, Msg: "secret is not valid base32"}}}},
		{"import google-authenticator", 200, `{"id":"0a1b2c3d","token":{"id":"0a1b2c3d","period":30},"scratch":5,"replaced":2,"ignored":["RATE_LIMIT"]}`,
			func(c *Client) (any, error) { return c.ImportGA(ctx, "alice", []byte("JBSWY3DPEHPK3PXP\n")) },
			seen{Method: "POST", Path: "/v1/admin/import/google-authenticator", Query: "user=alice", Reason: "ticket 42",
				Type: "text/plain", Body: "JBSWY3DPEHPK3PXP\n"}, nil,
			GAResult{ID: "0a1b2c3d", Token: token.Info{ID: "0a1b2c3d", Period: 30}, Scratch: 5, Replaced: 2, Ignored: []string{"RATE_LIMIT"}}},
		{"audit", 200, `[{"seq":4,"time":"2025-01-02T03:04:05Z","actor":"root","action":"user.add","target":"alice","prev":"p","hash":"h"}]`,
			func(c *Client) (any, error) { return c.Audit(ctx, 3, 10) },
			seen{Method: "GET", Path: "/v1/admin/audit", Query: "after=3&limit=10"}, nil,
			[]AuditRecord{{Seq: 4, Time: created, Actor: "root", Action: "user.add", Target: "alice", Prev: "p", Hash: "h"}}},
		{"audit verify", 200, `{"ok":false,"records":9,"bad_seq":4,"error":"record 4: hash does not match its content"}`,
			func(c *Client) (any, error) { return c.VerifyAudit(ctx) },
			seen{Method: "GET", Path: "/v1/admin/audit/verify"}, nil,
			AuditCheck{Records: 9, BadSeq: 4, Error: "record 4: hash does not match its content"}},
		{"compact", 200, `{"compacted":90,"revision":100}`,
			func(c *Client) (any, error) { return c.Compact(ctx, 10) },
			seen{Method: "POST", Path: "/v1/admin/compact", Reason: "ticket 42", Type: "application/json"},
			map[string]any{"keep": 10.0}, CompactResult{Compacted: 90, Revision: 100}},
		{"status", 200, `{"revision":100,"compacted":90,"version":"v1"}`,
			func(c *Client) (any, error) { return c.Status(ctx) },
			seen{Method: "GET", Path: "/v1/status"}, nil, Status{Revision: 100, Compacted: 90, Version: "v1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got seen
			c := serve(t, ca, fake(t, tc.status, tc.answer, &got), Options{Reason: "ticket 42"})
			out, err := tc.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if got.Auth != "Bearer "+adminToken {
				t.Errorf("Authorization = %q, want the bearer admin token", got.Auth)
			}
			body := got.Body
			got.Auth = ""
			want := tc.want
			if tc.wantBody != nil {
				var b any
				if err := json.Unmarshal([]byte(body), &b); err != nil {
					t.Fatalf("request body %q: %v", body, err)
				}
				if !reflect.DeepEqual(b, tc.wantBody) {
					t.Errorf("request body = %s, want %v", body, tc.wantBody)
				}
				got.Body = ""
			}
			if got != want {
				t.Errorf("request = %+v, want %+v", got, want)
			}
			if tc.wantOut != nil && !reflect.DeepEqual(out, tc.wantOut) {
				t.Errorf("answer = %+v, want %+v", out, tc.wantOut)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	tests := []struct {
		name    string
		status  int
		body    string
		is      error
		wantMsg string
	}{
		{"401", 401, `{"error":"unknown admin token"}`, ErrUnauthorized, "the registry refused the admin token: unknown admin token"},
		{"403 without body", 403, "", ErrUnauthorized, "the registry refused the admin token"},
		{"404", 404, `{"error":"no user \"bob\""}`, ErrNotFound, `no user "bob"`},
		{"409", 409, `{"error":"user \"bob\" exists"}`, ErrConflict, `user "bob" exists`},
		{"400", 400, `{"error":"scope \"a b\": letters, digits"}`, nil, `scope "a b": letters, digits`},
		{"500 html", 500, `<html>oops</html>`, nil, "registry answered 500 (internal server error)"},
		{"redirect not followed", 302, "", nil, "registry answered 302 (found)"},
		{"answer not json", 200, `{"name": JBSWY3DPEHPK3PXP`, ErrBadAnswer, "the answer is not the JSON expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got seen
			h := fake(t, tc.status, tc.body, &got)
			if tc.status == 302 {
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
				})
			}
			c := serve(t, ca, h, Options{})
			_, err := c.User(context.Background(), "bob")
			if err == nil {
				t.Fatal("User: no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("User: %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("User: %q, want it to contain %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), adminToken) || strings.Contains(err.Error(), "JBSWY3DP") {
				t.Errorf("User: %q holds the token or the answer", err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c := serve(t, ca, h, Options{Timeout: 200 * time.Millisecond})
	defer close(release)
	_, err := c.Users(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("Users against a registry that never answers: %v, want a timeout", err)
	}
}

func TestPinnedCA(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t), newTestCA(t)
	var got seen
	srv := httptest.NewUnstartedServer(fake(t, 200, `[]`, &got))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-CA cases end in handshake errors
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}}
	srv.StartTLS()
	defer srv.Close()
	tests := []struct {
		name    string
		caFile  string
		wantErr string
	}{
		{"pinned CA", ca.file(t), ""},
		{"another CA", other.file(t), "not signed by a trusted CA"},
		{"system roots", "", "not signed by a trusted CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Options{URL: srv.URL, Token: adminToken, CAFile: tc.caFile})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Users(context.Background())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Users = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no url", Options{Token: "t"}, "no registry URL"},
		{"http to a remote host", Options{URL: "http://registry.example:8080", Token: "t"}, "only allowed to a loopback"},
		{"other scheme", Options{URL: "ftp://registry.example", Token: "t"}, "want https://"},
		{"no host", Options{URL: "https:///x", Token: "t"}, "want https://"},
		{"user in url", Options{URL: "https://u:p@registry.example", Token: "t"}, "no user"},
		{"no token", Options{URL: "https://registry.example"}, "no admin token"},
		{"token with newline", Options{URL: "https://registry.example", Token: "a\nb"}, "control characters"},
		{"reason with newline", Options{URL: "https://registry.example", Token: "t", Reason: "a\r\nX-Evil: 1"}, "reason"},
		{"CA file missing", Options{URL: "https://registry.example", Token: "t", CAFile: filepath.Join(dir, "nope")}, "CA file"},
		{"CA file not PEM", Options{URL: "https://registry.example", Token: "t", CAFile: notPEM}, "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%+v) = %v, want %q", tc.o.URL, err, tc.wantErr)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:8443", "http://[::1]:1", "http://localhost:9", "https://r.example/prefix/"} {
		if _, err := New(Options{URL: ok, Token: "t"}); err != nil {
			t.Errorf("New(%q) = %v, want nil", ok, err)
		}
	}
}

func TestPathPrefix(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var got seen
	c := serve(t, ca, fake(t, 200, `[]`, &got), Options{})
	c.bases[0].Path = "/registry"
	if _, err := c.Users(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/registry/v1/admin/users" {
		t.Errorf("path = %q, want the prefix kept", got.Path)
	}
}

func TestReadTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", adminToken+"\n", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"good", good, adminToken, ""},
		{"owner read only", write("ro", "  tok  \n", 0o400), "tok", ""},
		{"readable by others", write("open", adminToken, 0o644), "", "chmod 600"},
		{"symlink", link, "", "symlink"},
		{"empty", write("empty", "\n\n", 0o600), "", "empty"},
		{"two lines", write("two", "a\nb\n", 0o600), "", "one token on one line"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
		{"directory", dir, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadTokenFile(tc.path)
			if tc.name == "directory" {
				if err == nil {
					t.Errorf("ReadTokenFile(dir) = nil error")
				}
				return
			}
			if got != tc.want || (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadTokenFile(%s) = %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), adminToken) {
				t.Errorf("ReadTokenFile: %q holds the token", err)
			}
		})
	}
}

// A change without a reason sends no X-Reason; a read never sends one.
func TestReasonOnlyOnChanges(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var got seen
	c := serve(t, ca, fake(t, 200, `[]`, &got), Options{Reason: "why"})
	if _, err := c.Users(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Reason != "" {
		t.Errorf("GET carried X-Reason %q", got.Reason)
	}
	c2 := serve(t, ca, fake(t, 204, "", &got), Options{})
	if _, err := c2.RemoveUser(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	if got.Reason != "" {
		t.Errorf("change without a reason carried X-Reason %q", got.Reason)
	}
}

func TestRequiredAnswers(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var got seen
	c := serve(t, ca, fake(t, 200, `{}`, &got), Options{})
	ctx := context.Background()
	if _, err := c.BackupCodes(ctx, "a"); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("BackupCodes with no codes = %v, want ErrBadAnswer", err)
	}
	if _, err := c.Passcode(ctx, "a", time.Hour); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("Passcode with no code = %v, want ErrBadAnswer", err)
	}
	if _, err := c.AddNode(ctx, "n", "s"); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("AddNode with no credential = %v, want ErrBadAnswer", err)
	}
}

func TestImportRefused(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var got seen
	body := `{"added":0,"duplicates":0,"users_created":0,"revisions":0,"invalid":[{"Line":2,"Msg":"secret is not valid base32"}],` +
		`"error":"1 invalid lines; nothing was imported"}`
	c := serve(t, ca, fake(t, 400, body, &got), Options{})
	_, err := c.ImportCSV(context.Background(), strings.NewReader("x"), ImportOptions{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Message != "1 invalid lines; nothing was imported" ||
		!reflect.DeepEqual(ae.Invalid, []LineError{{2, "secret is not valid base32"}}) {
		t.Fatalf("ImportCSV refused = %#v, want an APIError with the invalid lines", err)
	}
}
