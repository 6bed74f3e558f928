package registry

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestStreamOutlivesWriteTimeout: a node's watch stream lasts longer than write_timeout and
// read_timeout, which cut an ordinary request.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.ReadHeaderTimeout = time.Second, time.Second, time.Second
	}})
	cred := e.addNode("n1", "a")
	n := e.follow(cred)
	start := time.Now()
	for time.Since(start) < 3500*time.Millisecond {
		n.next() // fails the test when the stream ends
	}
	e.addUser("late", "a")
	e.addToken("late")
	if b := n.nextBatch(); b.Rev != e.srv.store.Rev() {
		t.Errorf("batch after 3.5 s at revision %d, want %d", b.Rev, e.srv.store.Rev())
	}
}

// slowStore is a real store whose Updates start late once slow is set, as on an etcd far away.
type slowStore struct {
	kv.Store
	slow *atomic.Bool
}

func (s slowStore) Update(ctx context.Context, fn func(kv.Txn) error) (int64, error) {
	if s.slow.Load() {
		time.Sleep(1500 * time.Millisecond)
	}
	return s.Store.Update(ctx, fn)
}

// TestImportOutlivesWriteTimeout: an import that works longer than write_timeout (1 s here) is
// answered, not cut off; an ordinary request is still bounded (TestSlowClientsCutOff).
func TestImportOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	st, err := kv.OpenBolt(filepath.Join(t.TempDir(), "store", "registry.db"), kv.BoltOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var slow atomic.Bool
	e := newEnv(t, envOptions{store: slowStore{Store: st, slow: &slow}, cfg: func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.ReadHeaderTimeout = time.Second, time.Second, time.Second
	}})
	slow.Store(true)
	var csv strings.Builder
	for i := range 3 {
		fmt.Fprintf(&csv, "slow%d,%s\n", i, totp.EncodeSecret(bytes.Repeat([]byte{byte(i + 1)}, 20)))
	}
	start := time.Now()
	var rep ImportReport
	e.mustAdmin(200, "POST", "/v1/admin/import/csv?scope=alpha", csv.String(), &rep)
	if rep.Added != 3 {
		t.Errorf("import = %+v, want 3 added", rep)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("the import took %v: too fast to show that write_timeout (1 s) does not cut it", took)
	}
}
