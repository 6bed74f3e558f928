package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/registry"
	"github.com/pam-totp/pam-totp/pkg/seal"
)

// TestMigrateCommand: migrate copies a stopped registry's store into an empty one and prints the
// counts and the new epoch; it refuses a target that is not empty, and a target with another
// keyring.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	line, _ := seal.GenerateKey(rand.Reader, "k1")
	write(t, filepath.Join(dir, "keyring"), []byte(line))
	other, _ := seal.GenerateKey(rand.Reader, "k2")
	write(t, filepath.Join(dir, "other-keyring"), []byte(other))
	sum := sha256.Sum256([]byte("admin-secret"))
	write(t, filepath.Join(dir, "admins"), []byte("root "+hex.EncodeToString(sum[:])+"\n"))
	conf := func(name, keyring string) string {
		path := filepath.Join(dir, name+".conf")
		write(t, path, fmt.Appendf(nil, "listen = \"127.0.0.1:0\"\ninsecure_http = true\nstore = %q\nkey_file = %q\nadmin_tokens_file = %q\n",
			filepath.Join(dir, name, "registry.db"), filepath.Join(dir, keyring), filepath.Join(dir, "admins")))
		return path
	}
	from, to, wrongKeys := conf("from", "keyring"), conf("to", "keyring"), conf("wrong", "other-keyring")

	// A registry on the source takes one user, then stops.
	cfg, _, err := registry.LoadConfig(from)
	if err != nil {
		t.Fatal(err)
	}
	st, err := registry.OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := seal.LoadKeyring(cfg.KeyFile)
	admins, _ := registry.LoadAdminTokens(cfg.AdminTokens)
	srv, err := registry.New(context.Background(), registry.Options{Config: *cfg, Store: st, Sealer: keys, Admins: admins,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	req, _ := http.NewRequest("POST", hs.URL+"/v1/admin/users", strings.NewReader(`{"name":"ann","scopes":["a"]}`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST user = %v %v", resp, err)
	}
	resp.Body.Close()
	hs.Close()
	srv.Shutdown()
	st.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  *regexp.Regexp
		wantErr  string
	}{
		{name: "no --to", args: []string{"migrate", "--config", from}, wantCode: 2, wantErr: "--to FILE is required"},
		{name: "another keyring", args: []string{"migrate", "--config", from, "--to", wrongKeys}, wantCode: 1, wantErr: "same keyring"},
		{name: "copies", args: []string{"migrate", "--config", from, "--to", to},
			wantOut: regexp.MustCompile(`^copied 3 keys \(audit 1, meta 1, user 1\) from bbolt \S+ to bbolt \S+ in 1 revisions, \S+\nnew store epoch [0-9a-f]{32} \(the source's: [0-9a-f]{32}\): every node resyncs once from the new store\n$`)},
		{name: "target not empty", args: []string{"migrate", "--config", from, "--to", to}, wantCode: 1, wantErr: "the target store is not empty"},
	}
	for _, tt := range tests { // in order: "copies" fills the target
		var out, errOut bytes.Buffer
		code := run(tt.args, &out, &errOut)
		if code != tt.wantCode || tt.wantOut != nil && !tt.wantOut.MatchString(out.String()) || !strings.Contains(errOut.String(), tt.wantErr) {
			t.Errorf("%s: run(%q) = %d, stdout %q, stderr %q; want %d, %v, %q", tt.name, tt.args, code, out.String(), errOut.String(),
				tt.wantCode, tt.wantOut, tt.wantErr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "wrong", "registry.db")); err == nil {
		t.Error("a refused migration created the target store")
	}
}
