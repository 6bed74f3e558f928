package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// dump reads every key of st but the epoch.
func dump(t *testing.T, st kv.Store) (map[string]string, string) {
	t.Helper()
	m, epoch := map[string]string{}, ""
	err := st.View(context.Background(), func(_ int64, tx kv.Txn) error {
		return tx.Range("", func(kvp kv.KeyValue) error {
			if kvp.Key == keyEpoch {
				epoch = string(kvp.Value)
			} else {
				m[kvp.Key] = string(kvp.Value)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, epoch
}

// serve opens a Server on st with e's keyring, as a registry started on a migrated store does.
func (e *env) serveOn(t *testing.T, st kv.Store) *Server {
	t.Helper()
	cfg := DefaultConfig()
	srv, err := New(context.Background(), Options{Config: cfg, Store: st, Sealer: e.keys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// TestMigrateBoltToEtcdAndBack: every key is copied as it is, the target gets a new epoch, the
// audit chain verifies at the target, and the copy back to a new bbolt file is the same again.
func TestMigrateBoltToEtcdAndBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, envOptions{})
	e.addUser("alice", "c1")
	e.addToken("alice")
	e.addUser("bob", "c1", "c2")
	e.addToken("bob")
	e.addNode("n1", "c1")
	want, fromEpoch := dump(t, e.store)
	if fromEpoch == "" || fromEpoch != e.srv.epoch {
		t.Fatalf("source epoch %q, server's %q: want one, the same", fromEpoch, e.srv.epoch)
	}

	_, _, etcd := etcdStore(t, "/migrate/")
	rep, err := Migrate(ctx, e.store, etcd, rand.Reader)
	if err != nil {
		t.Fatalf("Migrate(bolt → etcd) = %v", err)
	}
	got, toEpoch := dump(t, etcd)
	if !maps.Equal(got, want) {
		t.Errorf("etcd holds %d keys, want the %d of the source as they are", len(got), len(want))
	}
	if rep.Keys != len(want) || rep.ByKind["rec"] != 2 || rep.ByKind["user"] != 2 || rep.ByKind["node"] != 1 || rep.ByKind["audit"] < 5 {
		t.Errorf("report = %+v, want %d keys: 2 rec, 2 user, 1 node, at least 5 audit", rep, len(want))
	}
	if toEpoch != rep.Epoch || toEpoch == fromEpoch || rep.FromEpoch != fromEpoch {
		t.Errorf("epochs: source %q, target %q, report %+v; want a new one at the target", fromEpoch, toEpoch, rep)
	}
	srv := e.serveOn(t, etcd)
	if srv.epoch != toEpoch {
		t.Errorf("registry on the target announces epoch %q, want %q", srv.epoch, toEpoch)
	}
	if v, err := srv.VerifyAudit(ctx); err != nil || !v.OK || v.Records < 5 {
		t.Errorf("audit verify at the target = %+v, %v; want OK", v, err)
	}

	if _, err := Migrate(ctx, e.store, etcd, rand.Reader); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("Migrate into a non-empty store = %v, want ErrTargetNotEmpty", err)
	}

	back, err := kv.OpenBolt(filepath.Join(t.TempDir(), "back", "registry.db"), kv.BoltOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	rep2, err := Migrate(ctx, etcd, back, rand.Reader)
	if err != nil {
		t.Fatalf("Migrate(etcd → bolt) = %v", err)
	}
	got, backEpoch := dump(t, back)
	if !maps.Equal(got, want) || rep2.Keys != len(want) || backEpoch == toEpoch || rep2.FromEpoch != toEpoch {
		t.Errorf("back in bbolt: %d keys (report %+v), epoch %q; want the %d keys and a third epoch", len(got), rep2, backEpoch, len(want))
	}
	if v, err := e.serveOn(t, back).VerifyAudit(ctx); err != nil || !v.OK {
		t.Errorf("audit verify back in bbolt = %+v, %v; want OK", v, err)
	}
}

// TestMigrateInChunks: a store larger than one target Update is copied in several, and a
// registry refuses a store whose migration did not finish.
func TestMigrateInChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, envOptions{})
	for i := range migrateChunkKeys {
		e.addUser(fmt.Sprintf("u%03d", i)) // a user and an audit record each
	}
	want, _ := dump(t, e.store)
	to, err := kv.OpenBolt(filepath.Join(t.TempDir(), "to", "registry.db"), kv.BoltOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { to.Close() })
	rep, err := Migrate(ctx, e.store, to, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := dump(t, to); !maps.Equal(got, want) || rep.Revisions < 3 {
		t.Errorf("copied %d of %d keys in %d revisions, want all in at least 3", len(got), len(want), rep.Revisions)
	}
	if _, err := to.Update(ctx, func(tx kv.Txn) error { return tx.Put(keyMigrating, []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, Options{Config: DefaultConfig(), Store: to, Sealer: e.keys, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "unfinished") {
		t.Errorf("New on an unfinished migration = %v, want a refusal", err)
	}
}
