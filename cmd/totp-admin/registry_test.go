package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/cmdline"
)

const adminToken = "adm1n-t0ken-never-printed"

// testCA is a throwaway CA and a server certificate for 127.0.0.1/localhost, written to dir.
type testCA struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pam-totp test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
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
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "registry.crt"),
		keyFile:  filepath.Join(dir, "registry-tls.key"),
		cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{c.caFile, "CERTIFICATE", caDER, 0o644}, {c.certFile, "CERTIFICATE", der, 0o644}, {c.keyFile, "PRIVATE KEY", keyDER, 0o600}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// request is one request as the fake registry saw it.
type request struct {
	Method, Path, Query, Reason, Type string
	Body                              any // decoded JSON, or the text of a non-JSON body; nil when empty
}

// answer is the fake's reply to "METHOD /path".
type answer struct {
	status int
	body   string
}

// fakeRegistry answers from a table and records what it was asked.
type fakeRegistry struct {
	srv     *httptest.Server
	ca      *testCA
	tokFile string
	mu      sync.Mutex
	got     []request
	badAuth []string
}

func newFakeRegistry(t *testing.T, answers map[string]answer) *fakeRegistry {
	t.Helper()
	dir := t.TempDir()
	f := &fakeRegistry{ca: newTestCA(t, dir), tokFile: filepath.Join(dir, "admin-token")}
	if err := os.WriteFile(f.tokFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Reason: r.Header.Get("X-Reason"), Type: r.Header.Get("Content-Type")}
		if len(raw) > 0 {
			var v any
			if strings.HasPrefix(req.Type, "application/json") && json.Unmarshal(raw, &v) == nil {
				req.Body = v
			} else {
				req.Body = string(raw)
			}
		}
		f.mu.Lock()
		f.got = append(f.got, req)
		if a := r.Header.Get("Authorization"); a != "Bearer "+adminToken {
			f.badAuth = append(f.badAuth, a)
		}
		f.mu.Unlock()
		a, ok := answers[r.Method+" "+req.Path]
		if !ok {
			a = answer{404, `{"error":"no such admin endpoint"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-CA cases end in handshake errors
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.ca.cert}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.got...)
}

// runWith runs totp-admin with args, stdin and extra environment.
func runWith(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "TERM=xterm-256color", "LANG=C.UTF-8"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// run runs totp-admin against the fake with the registry flags after the command's arguments.
func (f *fakeRegistry) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	args = append(args, "--registry", f.srv.URL, "--admin-token-file", f.tokFile, "--ca-file", f.ca.caFile)
	return runWith(t, nil, stdin, args...)
}

const (
	tokA     = `{"user":"alice","id":"0a1b2c3d","name":"phone","algorithm":"SHA1","digits":6,"period":30,"state":"active","created":"2025-01-02T03:04:05Z"}`
	tokB     = `{"user":"alice","id":"4e5f6071","name":"laptop","algorithm":"SHA256","digits":8,"period":30,"state":"disabled","created":"2025-01-02T03:04:05Z","last_used":"2025-02-03T04:05:06Z"}`
	gaSample = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30\n\" TOTP_AUTH\n12345678\n23456789\n"
	csvFile  = "alice,JBSWY3DPEHPK3PXP,phone\nbob,JBSWY3DPEHPK3PXPJBSWY3DP\n"
)

func TestRegistryCommands(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "tokens.csv")
	gaPath := filepath.Join(dir, "google_authenticator")
	os.WriteFile(csvPath, []byte(csvFile), 0o600)
	os.WriteFile(gaPath, []byte(gaSample), 0o400)
	recent := time.Now().Add(-42*time.Minute - 20*time.Second).UTC().Format(time.RFC3339) // "42m ago" for 40 s
	J := func(s string) any {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			panic(s)
		}
		return v
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		answers  map[string]answer
		want     []request // Body compared as decoded JSON
		wantCode int
		wantOut  []string
		notOut   []string
		wantErr  string
	}{
		{name: "user add",
			args: []string{"user", "add", "alice", "--mail", "alice@example.org", "--scope", "c1", "--scope", "c2", "--reason", "ticket 7"},
			answers: map[string]answer{"POST /v1/admin/users": {201,
				`{"name":"alice","mail":"alice@example.org","scopes":["c1","c2"],"created":"2025-01-02T03:04:05Z"}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users", Reason: "ticket 7", Type: "application/json",
				Body: J(`{"name":"alice","mail":"alice@example.org","scopes":["c1","c2"]}`)}},
			wantOut: []string{"User alice added (scopes c1,c2, mail alice@example.org).\n"}},
		{name: "user add without scope hints",
			args:    []string{"user", "add", "bob"},
			answers: map[string]answer{"POST /v1/admin/users": {201, `{"name":"bob","scopes":[]}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users", Type: "application/json",
				Body: J(`{"name":"bob","scopes":[]}`)}},
			wantOut: []string{"User bob added (scopes -, mail -).", "user set bob --scope CLUSTER"}},
		{name: "user list",
			args: []string{"user", "list"},
			answers: map[string]answer{"GET /v1/admin/users": {200,
				`[{"name":"alice","mail":"a@x","scopes":["c1","c2"],"tokens":2,"backup_codes":10,"created":"2025-01-02T03:04:05Z"},{"name":"evil\u001b[31m","scopes":[],"tokens":0,"backup_codes":0}]`}},
			want: []request{{Method: "GET", Path: "/v1/admin/users"}},
			wantOut: []string{"NAME       MAIL  SCOPES  TOKENS  BACKUP CODES  CREATED\n", "alice      a@x   c1,c2   2       10            2025-01-02 03:04Z\n",
				"evil?[31m  -     -       0       0             -\n"},
			notOut: []string{"\x1b"}},
		{name: "user list empty",
			args:    []string{"user", "list"},
			answers: map[string]answer{"GET /v1/admin/users": {200, `{"users":[]}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/users"}},
			wantOut: []string{"No users.\n"}},
		{name: "user list json",
			args:    []string{"user", "list", "--json"},
			answers: map[string]answer{"GET /v1/admin/users": {200, `[{"name":"alice","scopes":["c1"],"tokens":1}]`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/users"}},
			wantOut: []string{`"name": "alice"`, `"tokens": 1`}},
		{name: "user show",
			args: []string{"user", "show", "alice"},
			answers: map[string]answer{
				"GET /v1/admin/users/alice":        {200, `{"name":"alice","mail":"a@x","scopes":["c1"],"tokens":2,"backup_codes":9,"created":"2025-01-02T03:04:05Z"}`},
				"GET /v1/admin/users/alice/tokens": {200, `[` + tokA + `,` + tokB + `]`}},
			want: []request{{Method: "GET", Path: "/v1/admin/users/alice"}, {Method: "GET", Path: "/v1/admin/users/alice/tokens"}},
			wantOut: []string{"user:         alice\n", "mail:         a@x\n", "scopes:       c1\n", "tokens:       2\n", "backup codes: 9\n",
				"alice  0a1b2c3d  phone   SHA1       6       30      active"}},
		{name: "user set scopes",
			args:    []string{"user", "set", "alice", "--scope", "c3", "--reason", "moved"},
			answers: map[string]answer{"PATCH /v1/admin/users/alice": {200, `{"name":"alice","scopes":["c3"]}`}},
			want: []request{{Method: "PATCH", Path: "/v1/admin/users/alice", Reason: "moved", Type: "application/json",
				Body: J(`{"scopes":["c3"]}`)}},
			wantOut: []string{"User alice changed: scopes c3, mail -.\n"}},
		{name: "user set clears mail",
			args:    []string{"user", "set", "alice", "--mail", ""},
			answers: map[string]answer{"PATCH /v1/admin/users/alice": {200, `{"name":"alice","scopes":["c3"]}`}},
			want: []request{{Method: "PATCH", Path: "/v1/admin/users/alice", Type: "application/json",
				Body: J(`{"mail":""}`)}},
			wantOut: []string{"User alice changed"}},
		{name: "user set nothing", args: []string{"user", "set", "alice"}, wantCode: 2,
			wantErr: "totp-admin: user set: nothing to change: give --mail or --scope\nusage:"},
		{name: "user remove",
			args:    []string{"user", "remove", "alice"},
			answers: map[string]answer{"DELETE /v1/admin/users/alice": {200, `{"name":"alice","tokens":2,"backup_codes":10}`}},
			want:    []request{{Method: "DELETE", Path: "/v1/admin/users/alice"}},
			wantOut: []string{"User alice removed, with 2 tokens and 10 backup codes.\n"}},
		{name: "token list",
			args:    []string{"token", "list", "alice"},
			answers: map[string]answer{"GET /v1/admin/users/alice/tokens": {200, `{"tokens":[` + tokA + `,` + tokB + `]}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"}},
			wantOut: []string{"USER   ID        NAME    ALGORITHM  DIGITS  PERIOD  STATE     CREATED            LAST USED\n",
				"alice  4e5f6071  laptop  SHA256     8       30      disabled  2025-01-02 03:04Z  2025-02-03 04:05Z\n"}},
		{name: "token list none",
			args:    []string{"token", "list", "alice"},
			answers: map[string]answer{"GET /v1/admin/users/alice/tokens": {200, `[]`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"}},
			wantOut: []string{"alice has no tokens.\n"}},
		{name: "token add, registry makes the secret",
			args: []string{"token", "add", "alice", "--name", "phone", "--qr", "half"},
			answers: map[string]answer{"POST /v1/admin/users/alice/tokens": {201,
				`{"user":"alice","id":"0a1b2c3d","name":"phone","algorithm":"SHA1","digits":6,"period":30,"state":"active",` +
					`"secret":"` + secret + `","uri":"otpauth://totp/Example%20HPC:alice?secret=` + secret + `&issuer=Example%20HPC&algorithm=SHA1&digits=6&period=30"}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/tokens", Type: "application/json",
				Body: J(`{"name":"phone","algorithm":"SHA1","digits":6,"period":30,"state":"active"}`)}},
			wantOut: []string{`New token 0a1b2c3d ("phone") for alice, active.`, "▀",
				"otpauth URI:     otpauth://totp/Example%20HPC:alice?secret=" + secret + "&issuer=Example%20HPC",
				"secret (base32): " + secret, "secret (hex):    48656c6c6f21deadbeef", "This is the only time the secret is shown.",
				"Login nodes of alice's scopes have the token within seconds."}},
		{name: "token add, secret given",
			args: []string{"token", "add", "alice", "--secret-file", "-", "--algorithm", "sha256", "--digits", "8", "--period", "60", "--no-qr"},
			answers: map[string]answer{"POST /v1/admin/users/alice/tokens": {201,
				`{"user":"alice","id":"0a1b2c3d","name":"token-1","algorithm":"SHA256","digits":8,"period":60,"state":"active"}`}},
			stdin: "jbsw y3dp ehpk 3pxp\n",
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/tokens", Type: "application/json",
				Body: J(`{"secret":"JBSWY3DPEHPK3PXP","algorithm":"SHA256","digits":8,"period":60,"state":"active"}`)}},
			wantOut: []string{`Token 0a1b2c3d ("token-1") of alice added, active.` + "\n"},
			notOut:  []string{"JBSW", "secret"}},
		{name: "token add, answer's URI disagrees",
			args: []string{"token", "add", "alice", "--no-qr"},
			answers: map[string]answer{
				"POST /v1/admin/users/alice/tokens": {201, `{"user":"alice","id":"0a1b2c3d","name":"t","algorithm":"SHA1","digits":6,"period":30,"state":"active",` +
					`"secret":"` + secret + `","uri":"otpauth://totp/alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}`},
				"DELETE /v1/admin/users/alice/tokens/0a1b2c3d": {204, ``}},
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/tokens", Type: "application/json",
				Body: J(`{"algorithm":"SHA1","digits":6,"period":30,"state":"active"}`)},
				{Method: "DELETE", Path: "/v1/admin/users/alice/tokens/0a1b2c3d"}},
			wantCode: 1, notOut: []string{secret},
			wantErr: "totp-admin: token add: the otpauth URI and the token disagree: unexpected answer from the registry; token 0a1b2c3d was removed again\n"},
		{name: "token disable",
			args: []string{"token", "disable", "alice", "0a1b2c3d", "--reason", "lost phone"},
			answers: map[string]answer{
				"GET /v1/admin/users/alice/tokens":            {200, `[` + tokA + `,` + tokB + `]`},
				"PATCH /v1/admin/users/alice/tokens/0a1b2c3d": {200, `{}`}},
			want: []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"},
				{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/0a1b2c3d", Reason: "lost phone", Type: "application/json",
					Body: J(`{"state":"disabled"}`)}},
			wantOut: []string{`Token 0a1b2c3d ("phone") of alice disabled.` + "\n", "alice has no active token left"}},
		{name: "token enable",
			args: []string{"token", "enable", "alice", "4e5f6071"},
			answers: map[string]answer{
				"GET /v1/admin/users/alice/tokens":            {200, `[` + tokA + `,` + tokB + `]`},
				"PATCH /v1/admin/users/alice/tokens/4e5f6071": {200, ``}},
			want: []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"},
				{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/4e5f6071", Type: "application/json", Body: J(`{"state":"active"}`)}},
			wantOut: []string{`Token 4e5f6071 ("laptop") of alice enabled.` + "\n"}, notOut: []string{"no active token"}},
		{name: "token remove",
			args: []string{"token", "remove", "alice", "4e5f6071"},
			answers: map[string]answer{
				"GET /v1/admin/users/alice/tokens":             {200, `[` + tokA + `,` + tokB + `]`},
				"DELETE /v1/admin/users/alice/tokens/4e5f6071": {204, ``}},
			want: []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"},
				{Method: "DELETE", Path: "/v1/admin/users/alice/tokens/4e5f6071"}},
			wantOut: []string{`Token 4e5f6071 ("laptop") of alice removed.` + "\n"}, notOut: []string{"no active token"}},
		{name: "token remove unknown",
			args:     []string{"token", "remove", "alice", "nope"},
			answers:  map[string]answer{"GET /v1/admin/users/alice/tokens": {200, `[` + tokA + `]`}},
			want:     []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"}},
			wantCode: 1, wantErr: "totp-admin: token nope of alice: no such token\n"},
		{name: "reset",
			args:    []string{"reset", "alice", "--reason", "lost device"},
			answers: map[string]answer{"POST /v1/admin/users/alice/reset": {200, `{"tokens":2,"backup_codes":10}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/reset", Reason: "lost device", Type: "application/json",
				Body: J(`{}`)}},
			wantOut: []string{"alice reset: 2 tokens and 10 backup codes removed.\n", "totp-admin unlock alice"}},
		{name: "backup codes",
			args:    []string{"backup-codes", "alice"},
			answers: map[string]answer{"POST /v1/admin/users/alice/backup-codes": {200, `{"codes":["abcd-efgh-ijkl","mnop-qrst-uvwx"]}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/backup-codes", Type: "application/json",
				Body: J(`{}`)}},
			wantOut: []string{"New backup codes for alice (any older codes no longer work):\n\n   1. abcd-efgh-ijkl\n   2. mnop-qrst-uvwx\n",
				"they are shown only this once."}},
		{name: "passcode",
			args:    []string{"passcode", "alice", "--ttl", "30m"},
			answers: map[string]answer{"POST /v1/admin/users/alice/passcode": {200, `{"code":"83920174","expires":"2025-01-02T03:34:05Z"}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users/alice/passcode", Type: "application/json",
				Body: J(`{"ttl":"30m0s"}`)}},
			wantOut: []string{"One-time passcode for alice:\n\n    83920174\n\n", "until 2025-01-02 03:34:05Z.", "shown only this once."}},
		{name: "passcode ttl too long", args: []string{"passcode", "alice", "--ttl", "30d"}, wantCode: 2, wantErr: "--ttl"},
		{name: "node add",
			args:    []string{"node", "add", "login1", "--scope", "c1"},
			answers: map[string]answer{"POST /v1/admin/nodes": {201, `{"name":"login1","scope":"c1","credential":"ptn1.login1.AAAA"}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/nodes", Type: "application/json",
				Body: J(`{"name":"login1","scope":"c1"}`)}},
			wantOut: []string{"Node login1 added to scope c1. Its credential, shown only this once:\n\n    ptn1.login1.AAAA\n\n",
				"/etc/pam-totp/node.credential, owned by root, mode 0600"}},
		{name: "node add without scope", args: []string{"node", "add", "login1"}, wantCode: 2,
			wantErr: "totp-admin: node add: --scope is required"},
		{name: "node list",
			args: []string{"node", "list"},
			answers: map[string]answer{
				"GET /v1/admin/nodes": {200, `[{"name":"login1","scope":"c1","applied_rev":97,"count":12,"digest_ok":true,"behind":3,"streams":1,"last_contact":"` + recent + `"},` +
					`{"name":"login2","scope":"c1","applied_rev":90,"count":11,"digest_ok":false,"behind":10,"streams":0,"last_contact":"` + recent + `"},` +
					`{"name":"login3","scope":"c2","applied_rev":0,"digest_ok":null,"behind":0,"streams":0}]`}},
			want: []request{{Method: "GET", Path: "/v1/admin/nodes"}},
			wantOut: []string{"NAME    SCOPE  APPLIED  BEHIND  DIGEST    STREAMS  LAST CONTACT\n",
				"login1  c1     97       3       ok        1        ", "(42m ago)", "login2  c1     90       10      MISMATCH  0        ",
				"login3  c2     -        -       -         0        never\n"}},
		{name: "node remove",
			args:    []string{"node", "remove", "login1"},
			answers: map[string]answer{"DELETE /v1/admin/nodes/login1": {204, ``}},
			want:    []request{{Method: "DELETE", Path: "/v1/admin/nodes/login1"}},
			wantOut: []string{"Node login1 removed: its streams are closed and its credential no longer works.\n"}},
		{name: "import csv file",
			args:    []string{"import", "csv", csvPath, "--scope", "c1"},
			answers: map[string]answer{"POST /v1/admin/import/csv": {200, `{"added":2,"users_created":2,"duplicates":0,"revisions":1,"invalid":[]}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/import/csv", Query: "algorithm=SHA1&digits=6&period=30&scope=c1", Type: "text/csv",
				Body: csvFile}},
			wantOut: []string{"Imported 2 tokens (active) in ", "; 2 new users in scope c1.\n"}},
		{name: "import csv stdin",
			args: []string{"import", "csv", "-"}, stdin: csvFile,
			answers: map[string]answer{"POST /v1/admin/import/csv": {200, `{"added":1,"duplicates":1,"invalid":[]}`}},
			want:    []request{{Method: "POST", Path: "/v1/admin/import/csv", Query: "algorithm=SHA1&digits=6&period=30", Type: "text/csv", Body: csvFile}},
			wantOut: []string{"Imported 1 tokens (active) in ", "; 1 already present, skipped.\n"}},
		{name: "import csv skip invalid with parameters",
			args: []string{"import", "csv", csvPath, "--skip-invalid", "--digits", "8", "--algorithm", "sha512"},
			answers: map[string]answer{"POST /v1/admin/import/csv": {200,
				`{"added":1,"duplicates":0,"users_created":0,"invalid":[{"Line":2,"Msg":"secret is not valid base32"}]}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/import/csv", Query: "algorithm=SHA512&digits=8&period=30&skip_invalid=1",
				Type: "text/csv", Body: csvFile}},
			wantOut: []string{"Imported 1 tokens (active) in ", "; 1 invalid lines skipped.\n"},
			wantErr: "totp-admin: " + csvPath + ": line 2: secret is not valid base32\n"},
		{name: "import csv refused",
			args: []string{"import", "csv", csvPath},
			answers: map[string]answer{"POST /v1/admin/import/csv": {400, `{"added":0,"duplicates":0,"users_created":0,"revisions":0,` +
				`"invalid":[{"Line":2,"Msg":"secret is not valid base32"}],"error":"1 invalid lines; nothing was imported"}`}},
			want:     []request{{Method: "POST", Path: "/v1/admin/import/csv", Query: "algorithm=SHA1&digits=6&period=30", Type: "text/csv", Body: csvFile}},
			wantCode: 1, wantErr: "totp-admin: " + csvPath + ": line 2: secret is not valid base32\ntotp-admin: 1 invalid lines; nothing was imported\n"},
		{name: "import google-authenticator",
			args: []string{"import", "google-authenticator", "alice", gaPath},
			answers: map[string]answer{"POST /v1/admin/import/google-authenticator": {200,
				`{"id":"0a1b2c3d","token":{"user":"alice","id":"0a1b2c3d","name":"google-authenticator","period":30},"already":false,"scratch":2,"replaced":10,"ignored":["RATE_LIMIT"]}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/import/google-authenticator", Query: "user=alice", Type: "text/plain",
				Body: gaSample}},
			wantOut: []string{`Imported token 0a1b2c3d ("google-authenticator") for alice, active, 30-second steps.`,
				"Imported 2 scratch codes as backup codes (replacing 10 backup codes alice had).", "Ignored options (pam_totp.conf decides these for everyone): RATE_LIMIT.",
				"remove " + gaPath}},
		{name: "audit",
			args: []string{"audit", "--after", "3", "--limit", "2"},
			answers: map[string]answer{"GET /v1/admin/audit": {200,
				`[{"seq":4,"time":"2025-01-02T03:04:05Z","actor":"root","action":"user.add","target":"alice","reason":"ticket 7","prev":"p","hash":"h"},` +
					`{"seq":5,"time":"2025-01-02T03:04:06Z","actor":"bob","action":"node.remove","target":"login1","prev":"h","hash":"i"}]`}},
			want: []request{{Method: "GET", Path: "/v1/admin/audit", Query: "after=3&limit=2"}},
			wantOut: []string{"SEQ  TIME                  ACTOR  ACTION       TARGET  REASON\n",
				"4    2025-01-02 03:04:05Z  root   user.add     alice   ticket 7\n", "5    2025-01-02 03:04:06Z  bob    node.remove  login1  -\n",
				"(more may follow: --after 5)"}},
		{name: "audit verify",
			args:    []string{"audit", "verify"},
			answers: map[string]answer{"GET /v1/admin/audit/verify": {200, `{"ok":true,"records":12,"head":"abc"}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/audit/verify"}},
			wantOut: []string{"Audit log OK: 12 records, the hash chain is intact.\n"}},
		{name: "audit verify broken",
			args:     []string{"audit", "verify"},
			answers:  map[string]answer{"GET /v1/admin/audit/verify": {200, `{"ok":false,"records":3,"bad_seq":4,"error":"record 4: hash does not match its content"}`}},
			want:     []request{{Method: "GET", Path: "/v1/admin/audit/verify"}},
			wantCode: 1, wantErr: "totp-admin: the audit log's hash chain is broken at record 4: record 4: hash does not match its content\n"},
		{name: "compact",
			args:    []string{"compact", "--keep", "10", "--reason", "nightly"},
			answers: map[string]answer{"POST /v1/admin/compact": {200, `{"revision":101,"compacted":91}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/compact", Reason: "nightly", Type: "application/json",
				Body: J(`{"keep":10}`)}},
			wantOut: []string{"History compacted up to revision 91 (the registry is at 101).\n"}},
		{name: "compact without keep", args: []string{"compact"}, wantCode: 2, wantErr: "compact: give --keep N"},
		{name: "whoami",
			args:    []string{"whoami"},
			answers: map[string]answer{"GET /v1/admin/whoami": {200, `{"name":"desk","role":"helpdesk","scopes":["c1","c2"],"expires":"2027-07-01T00:00:00Z"}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/whoami"}},
			wantOut: []string{"admin:   desk\nrole:    helpdesk\nscopes:  c1,c2\nexpires: 2027-07-01T00:00:00Z\n"}},
		{name: "whoami json",
			args:    []string{"whoami", "--json"},
			answers: map[string]answer{"GET /v1/admin/whoami": {200, `{"name":"root","role":"full"}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/whoami"}},
			wantOut: []string{"{\n  \"name\": \"root\",\n  \"role\": \"full\",\n  \"scopes\": [],\n  \"expires\": null\n}\n"}},
		{name: "node show json",
			args: []string{"node", "show", "login2", "--json"},
			answers: map[string]answer{
				"GET /v1/admin/nodes": {200, `[{"name":"login1","scope":"c1","applied_rev":97,"count":12,"digest_ok":true,"behind":3,"streams":1},` +
					`{"name":"login2","scope":"c1","applied_rev":90,"count":11,"digest_ok":false,"behind":10,"streams":0,"created":"2026-01-02T03:04:05Z","version":"1.2"}]`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/nodes"}},
			wantOut: []string{`"name": "login2"`, `"digest_ok": false`, `"applied_rev": 90`}, notOut: []string{"login1"}},
		{name: "node show unknown",
			args:     []string{"node", "show", "login9"},
			answers:  map[string]answer{"GET /v1/admin/nodes": {200, `[{"name":"login1","scope":"c1"}]`}},
			want:     []request{{Method: "GET", Path: "/v1/admin/nodes"}},
			wantCode: 1, wantErr: `totp-admin: no node "login9": not found`},
		{name: "audit verify json",
			args:    []string{"audit", "verify", "--json"},
			answers: map[string]answer{"GET /v1/admin/audit/verify": {200, `{"ok":true,"records":12,"head":"abc","anchors":2}`}},
			want:    []request{{Method: "GET", Path: "/v1/admin/audit/verify"}},
			wantOut: []string{`"ok": true`, `"records": 12`, `"anchors": 2`}},
		{name: "user add unchanged json",
			args:    []string{"user", "add", "alice", "--scope", "c1", "--json"},
			answers: map[string]answer{"POST /v1/admin/users": {200, `{"name":"alice","scopes":["c1"],"tokens":1,"backup_codes":0,"created":"2026-01-02T03:04:05Z","changed":false}`}},
			want: []request{{Method: "POST", Path: "/v1/admin/users", Type: "application/json",
				Body: J(`{"name":"alice","scopes":["c1"]}`)}},
			wantOut: []string{`"changed": false`, `"tokens": 1`}},
		{name: "token disable unchanged",
			args: []string{"token", "disable", "alice", "0a1b2c3d"},
			answers: map[string]answer{
				"GET /v1/admin/users/alice/tokens":            {200, `[` + tokA + `,` + tokB + `]`},
				"PATCH /v1/admin/users/alice/tokens/0a1b2c3d": {200, `{"changed":false}`}},
			want: []request{{Method: "GET", Path: "/v1/admin/users/alice/tokens"},
				{Method: "PATCH", Path: "/v1/admin/users/alice/tokens/0a1b2c3d", Type: "application/json",
					Body: J(`{"state":"disabled"}`)}},
			wantOut: []string{`Token 0a1b2c3d ("phone") of alice unchanged: already disabled.` + "\n"}, notOut: []string{"no active token"}},
		{name: "role refused",
			args:     []string{"node", "remove", "x"},
			answers:  map[string]answer{"DELETE /v1/admin/nodes/x": {403, `{"error":"this admin token's role helpdesk does not allow DELETE /v1/admin/nodes/x (it needs full)"}`}},
			want:     []request{{Method: "DELETE", Path: "/v1/admin/nodes/x"}},
			wantCode: 1, wantErr: "totp-admin: the registry refused the admin token: this admin token's role helpdesk does not allow DELETE /v1/admin/nodes/x (it needs full)\n"},
		{name: "refused token",
			args:     []string{"user", "list"},
			answers:  map[string]answer{"GET /v1/admin/users": {401, `{"error":"admin authentication required"}`}},
			want:     []request{{Method: "GET", Path: "/v1/admin/users"}},
			wantCode: 1, wantErr: "totp-admin: the registry refused the admin token: admin authentication required\n"},
		{name: "forbidden",
			args:     []string{"node", "remove", "x"},
			answers:  map[string]answer{"DELETE /v1/admin/nodes/x": {403, ``}},
			want:     []request{{Method: "DELETE", Path: "/v1/admin/nodes/x"}},
			wantCode: 1, wantErr: "totp-admin: the registry refused the admin token\n"},
		{name: "api error is cleaned",
			args:     []string{"user", "show", "bob"},
			answers:  map[string]answer{"GET /v1/admin/users/bob": {404, `{"error":"no user \"bob\u001b]0;x\u0007\""}`}},
			want:     []request{{Method: "GET", Path: "/v1/admin/users/bob"}},
			wantCode: 1, wantErr: "totp-admin: no user \"bob?]0;x?\"\n"},
		{name: "unlock clears failed proofs at the registry",
			args:    []string{"unlock", "alice"},
			answers: map[string]answer{"POST /v1/admin/users/alice/unlock": {200, `{"name":"alice","failures":10}`}},
			want:    []request{{Method: "POST", Path: "/v1/admin/users/alice/unlock", Type: "application/json", Body: J(`{}`)}},
			wantOut: []string{"alice unlocked at the registry: 10 failed proofs cleared.\n", "run\n`totp-admin unlock alice` on the node"}},
		{name: "unlock clears failed portal sign-ins at the registry",
			args:    []string{"unlock", "alice"},
			answers: map[string]answer{"POST /v1/admin/users/alice/unlock": {200, `{"name":"alice","failures":0,"sign_in_failures":10}`}},
			want:    []request{{Method: "POST", Path: "/v1/admin/users/alice/unlock", Type: "application/json", Body: J(`{}`)}},
			wantOut: []string{"alice unlocked at the registry: 0 failed proofs and 10 failed portal sign-ins cleared.\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRegistry(t, tc.answers)
			r := f.run(t, tc.stdin, tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("totp-admin %v: exit %d, want %d\n%s", tc.args, r.code, tc.wantCode, r)
			}
			got := f.requests()
			if len(got) != len(tc.want) {
				t.Fatalf("requests = %+v, want %+v\n%s", got, tc.want, r)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tc.want[i]) {
					t.Errorf("request %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if len(f.badAuth) > 0 {
				t.Errorf("requests without the admin token: %q", f.badAuth)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q\n%s", w, r)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(r.stdout, w) || strings.Contains(r.stderr, w) {
					t.Errorf("output holds %q\n%s", w, r)
				}
			}
			if !strings.Contains(r.stderr, tc.wantErr) || tc.wantErr == "" && r.stderr != "" {
				t.Errorf("stderr = %q, want %q", r.stderr, tc.wantErr)
			}
			if strings.Contains(r.stdout+r.stderr, adminToken) {
				t.Errorf("the admin token was printed\n%s", r)
			}
			golden(t, r)
		})
	}
}

// The registry flags may come first, from the environment, or be missing.
func TestRegistryFlags(t *testing.T) {
	f := newFakeRegistry(t, map[string]answer{"GET /v1/admin/users": {200, `[]`}})
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"flags first", nil, []string{"--registry", f.srv.URL, "--admin-token-file", f.tokFile, "--ca-file", f.ca.caFile, "user", "list"},
			0, "No users.", ""},
		{"flags with =", nil, []string{"user", "list", "--registry=" + f.srv.URL, "--admin-token-file=" + f.tokFile, "--ca-file=" + f.ca.caFile},
			0, "No users.", ""},
		{"environment", []string{"TOTP_REGISTRY=" + f.srv.URL, "TOTP_ADMIN_TOKEN_FILE=" + f.tokFile, "TOTP_CA_FILE=" + f.ca.caFile},
			[]string{"user", "list"}, 0, "No users.", ""},
		{"flag beats environment", []string{"TOTP_REGISTRY=https://127.0.0.1:1", "TOTP_ADMIN_TOKEN_FILE=" + f.tokFile, "TOTP_CA_FILE=" + f.ca.caFile},
			[]string{"user", "list", "--registry", f.srv.URL}, 0, "No users.", ""},
		{"no registry", nil, []string{"user", "list"}, 2, "", "totp-admin: user: needs --registry URL (or TOTP_REGISTRY)\nusage:"},
		{"no token file", nil, []string{"user", "list", "--registry", f.srv.URL}, 2, "",
			"totp-admin: user list: no admin token: give --admin-token-file FILE or set TOTP_ADMIN_TOKEN_FILE\n"},
		{"not the pinned CA", nil, []string{"user", "list", "--registry", f.srv.URL, "--admin-token-file", f.tokFile}, 1, "",
			"totp-admin: registry: its certificate is not signed by a trusted CA (give the registry's CA with --ca-file)"},
		{"plain http to a remote host", nil, []string{"user", "list", "--registry", "http://registry.example", "--admin-token-file", f.tokFile}, 1, "",
			"plain http is only allowed to a loopback address"},
		{"unknown subcommand", nil, []string{"node", "frob", "--registry", f.srv.URL}, 2, "", "totp-admin: node frob: unknown command"},
		{"local token list still local", nil, []string{"--config", "/nonexistent/pam_totp.conf", "token", "list"}, 1, "", "/nonexistent/pam_totp.conf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, tc.env, "", tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.wantOut) || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("totp-admin %v: %s\nwant exit %d, stdout with %q, stderr with %q", tc.args, r, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if strings.Contains(r.stdout+r.stderr, adminToken) {
				t.Errorf("the admin token was printed\n%s", r)
			}
			golden(t, r)
		})
	}
	t.Run("token file readable by others", func(t *testing.T) {
		open := filepath.Join(t.TempDir(), "token")
		os.WriteFile(open, []byte(adminToken), 0o644)
		r := runWith(t, nil, "", "user", "list", "--registry", f.srv.URL, "--admin-token-file", open, "--ca-file", f.ca.caFile)
		if r.code != 1 || !strings.Contains(r.stderr, "lets others read it; chmod 600 it") || strings.Contains(r.stderr, adminToken) {
			t.Fatalf("world-readable token file: %s", r)
		}
	})
}

// The registry flags go anywhere on the line, --registry given twice names two replicas, and "--" ends the flags; doctor
// takes them and runs locally all the same.
func TestRegistryFlagsAnywhere(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCmd  string
		wantURL  string
		wantArgs []string
	}{
		{[]string{"user", "list"}, "user list", "", nil},
		{[]string{"doctor", "--registry", "https://r", "--service", "sudo"}, "doctor", "https://r", nil},
		{[]string{"doctor", "--registry=https://r", "--ca-file", "ca.pem", "--admin-token-file=t"}, "doctor", "https://r", nil},
		{[]string{"--registry", "https://a", "doctor", "--registry", "https://b"}, "doctor", "https://a,https://b", nil},
		{[]string{"--registry", "https://a,https://b", "user", "list"}, "user list", "https://a,https://b", nil},
		{[]string{"token", "list", "--", "--registry", "https://r"}, "token list", "", []string{"--registry", "https://r"}},
	}
	for _, tc := range tests {
		e := &env{getenv: func(string) string { return "" }}
		root := newRoot(e)
		cmdline.Setup(root, io.Discard, io.Discard)
		cmd, rest, err := root.Find(tc.args)
		if err == nil {
			err = cmd.ParseFlags(rest)
		}
		if err != nil {
			t.Fatalf("totp-admin %q: %v", tc.args, err)
		}
		if got := cmdline.Name(cmd); got != tc.wantCmd || strings.Join(e.reg.urls, ",") != tc.wantURL || !slices.Equal(cmd.Flags().Args(), tc.wantArgs) {
			t.Errorf("totp-admin %q: command %q, --registry %q, arguments %q; want %q, %q, %q",
				tc.args, got, e.reg.urls, cmd.Flags().Args(), tc.wantCmd, tc.wantURL, tc.wantArgs)
		}
	}
}
