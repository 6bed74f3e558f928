package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// TestDaemonWithoutBus: with no bus at --bus, totp-syncd logs it once and syncs all the same.
func TestDaemonWithoutBus(t *testing.T) {
	t.Parallel()
	const rev = 5
	var snap bytes.Buffer
	w := syncframe.NewWriter(&snap)
	empty := &syncframe.Digest{}
	for _, f := range []syncframe.Frame{{Type: syncframe.Begin, Rev: rev}, {Type: syncframe.End, Rev: rev, Digest: empty.String()}} {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sync/snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(snap.Bytes())
	})
	mux.HandleFunc("GET /v1/sync/watch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("POST /v1/sync/ack", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /v1/sync/used", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"deleted":0,"revision":%d}`, rev)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	cred := filepath.Join(dir, "node.credential")
	if err := os.WriteFile(cred, []byte("ptn1.n.secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Store.Dir = storeDir
	cfg.Sync.Registry = config.URLs{srv.URL}
	cfg.Sync.CredentialFile = cred
	cfg.Sync.VerifySocket = filepath.Join(dir, "run", "verify.sock") // not the system's default path

	var logs busapitest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- daemon(ctx, &cfg, "unix:path="+filepath.Join(dir, "no-bus"), slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := nodesync.ReadStatus(&cfg, false, time.Now())
		if err == nil && st.Revision == rev {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("tokens.db not synced to revision %d in 10 s (status %+v, %v); log:\n%s", rev, st, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("daemon() = %d, want 0; log:\n%s", c, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop within 10 s of its context ending")
	}
	if n := strings.Count(logs.String(), "no D-Bus service"); n != 1 {
		t.Errorf("log has %d lines about the missing bus, want 1:\n%s", n, logs.String())
	}
}
