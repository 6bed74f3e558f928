package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestStatusVerify: `status --verify` on a standalone node reads the records back and says there
// is no registry's set to compare with (no false MISMATCH); on a node following a registry, a
// record that is not in meta's synced set is a mismatch, with the advice to resync.
func TestStatusVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// node writes a store holding one token, with meta, and a config for it with sync.
	node := func(name string, meta *store.Meta, sync string) string {
		storeDir := filepath.Join(dir, name)
		if err := os.Mkdir(storeDir, 0o700); err != nil {
			t.Fatal(err)
		}
		tok := token.Token{User: "carol", ID: "c1", Name: "phone", Algorithm: totp.SHA1, Digits: 6, Period: 30,
			Secret: []byte("12345678901234567890"), State: token.Active, Created: time.Unix(1700000000, 0).UTC()}
		err := store.NewTokens(store.Options{Dir: storeDir, Timeout: time.Second}).Update(func(x *store.TokensTx) error {
			if meta != nil {
				if err := x.SetMeta(*meta); err != nil {
					return err
				}
			}
			return x.PutToken(tok)
		})
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(conf, []byte("[store]\ndir = \""+storeDir+"\"\n"+sync), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
	const registry = "https://registry.example:8443"
	standalone := node("standalone", nil, "")
	synced := node("synced", &store.Meta{SchemaVersion: store.SchemaVersion, Revision: 5, Source: registry},
		"[sync]\nregistry = \""+registry+"\"\n")
	const replicaB = "https://registry-b.example:8443"
	movedAt := time.Now().Add(-90 * time.Second).UTC().Truncate(time.Second)
	moved := node("moved", &store.Meta{SchemaVersion: store.SchemaVersion, Revision: 5, Source: replicaB,
		SourceSince: movedAt, Epoch: "00112233445566778899aabbccddeeff"},
		"[sync]\nregistry = [\""+registry+"\", \""+replicaB+"\"]\n")
	// A wrong code the registry has not heard of yet.
	if err := store.NewState(store.Options{Dir: filepath.Join(dir, "synced"), Timeout: time.Second}).Update(func(x *store.StateTx) error {
		return x.AddEvent(token.LoginEvent{Kind: token.EventFailure, User: "carol", At: time.Unix(1700000000, 0).UTC()})
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		conf       string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{name: "standalone", conf: standalone, wantOut: "verify:            OK, every record read back: 1 (standalone: no registry's set to compare with)"},
		{name: "registry node, a record outside the synced set", conf: synced, wantCode: 1,
			wantOut: "verify:            MISMATCH: the records give 1", wantStderr: "restart totp-syncd to resync"},
		{name: "registry node: claims and the outbox", conf: synced, wantCode: 1,
			wantOut: "unreported logins: 1 (claims made offline and wrong codes, for the registry)", wantStderr: "resync"},
		{name: "replicas: the one followed and since when", conf: moved, wantCode: 1,
			wantOut: "following:         " + replicaB + " since " + movedAt.Local().Format(time.RFC3339) + " (1m3", wantStderr: "resync"},
		{name: "replicas: the store's epoch", conf: moved, wantCode: 1,
			wantOut: "\nstore epoch:       00112233445566778899aabbccddeeff\n", wantStderr: "resync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			args := []string{"status", "--verify", "--config", tt.conf}
			code := run(args, &out, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantStderr) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", args, code, out.String(), errOut.String(),
					tt.wantCode, tt.wantOut, tt.wantStderr)
			}
		})
	}
}
