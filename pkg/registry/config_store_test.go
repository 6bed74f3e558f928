package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
)

func TestParseStoreConfig(t *testing.T) {
	t.Parallel()
	const etcdLocal = "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://127.0.0.1:22379\"]\n"
	runConfigCases(t, []configCase{
		{name: "default is bbolt", in: "", want: "bbolt /var/lib/pam-totp-registry/registry.db"},
		{name: "flat path is bbolt", in: "store = \"/srv/r.db\"\n", want: "bbolt /srv/r.db"},
		{name: "bbolt section", in: "[store]\nbackend = \"bbolt\"\npath = \"/srv/r.db\"\n", want: "bbolt /srv/r.db"},
		{name: "etcd on loopback", in: etcdLocal + "prefix = \"/site-a/\"\nrequest_timeout = \"2s\"\n",
			want: "etcd http://127.0.0.1:2379,http://127.0.0.1:22379 prefix /site-a/ (plain http on loopback)"},
		{name: "etcd with TLS", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"https://etcd1:2379\"]\nca = \"/etc/ca.pem\"\n" +
			"cert = \"/etc/c.pem\"\nkey = \"/etc/k.pem\"\n",
			want: "etcd https://etcd1:2379 prefix /pam-totp/registry/ (TLS with a client certificate)"},
		{name: "unknown store key warns", in: etcdLocal + "colour = \"red\"\n", warn: "store.colour"},
		{name: "unknown backend", in: "[store]\nbackend = \"sqlite\"\n", wantErr: "store.backend"},
		{name: "etcd without endpoints", in: "[store]\nbackend = \"etcd\"\n", wantErr: "store.endpoints"},
		{name: "plain http off loopback", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\"]\n", wantErr: "loopback"},
		{name: "plain http by name", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"http://localhost:2379\"]\n", wantErr: "loopback"},
		{name: "mixed schemes", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"https://e:2379\"]\n", wantErr: "not both"},
		{name: "not a URL", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"etcd1:2379\"]\n", wantErr: "https://host:port"},
		{name: "endpoints not a list", in: "[store]\nbackend = \"etcd\"\nendpoints = \"https://e:2379\"\n", wantErr: "list"},
		{name: "cert without key", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\ncert = \"/c\"\n", wantErr: "together"},
		{name: "relative ca", in: "[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\nca = \"ca.pem\"\n", wantErr: "absolute"},
		{name: "tls files with http", in: etcdLocal + "ca = \"/ca.pem\"\n", wantErr: "https"},
		{name: "prefix without slashes", in: etcdLocal + "prefix = \"site\"\n", wantErr: "store.prefix"},
		{name: "prefix with a space", in: etcdLocal + "prefix = \"/a b/\"\n", wantErr: "store.prefix"},
		{name: "request timeout too short", in: etcdLocal + "request_timeout = \"1ms\"\n", wantErr: "request_timeout"},
		{name: "dial timeout not a duration", in: etcdLocal + "dial_timeout = \"soon\"\n", wantErr: "dial_timeout"},
		{name: "store a number", in: "store = 5\n", wantErr: "store"},
		{name: "relative flat path", in: "store = \"r.db\"\n", wantErr: "absolute"},
		{name: "etcd: key_file may sit anywhere", in: etcdLocal + "key_file = \"/var/lib/pam-totp-registry/k\"\n",
			want: "etcd http://127.0.0.1:2379,http://127.0.0.1:22379 prefix /pam-totp/registry/ (plain http on loopback)"},
	})
	c, _, err := ParseConfig([]byte(etcdLocal + "request_timeout = \"2s\"\n"))
	if err != nil || c.Store.RequestTimeout != 2*time.Second || c.Store.DialTimeout != 5*time.Second {
		t.Errorf("ParseConfig(etcd): timeouts %v, %v, %v; want 2s and the default 5s", c.Store.RequestTimeout, c.Store.DialTimeout, err)
	}
}

// OpenStore opens the store the config names: etcd here, a real one-member cluster.
func TestOpenStoreEtcd(t *testing.T) {
	t.Parallel()
	c, cfg, st := etcdStore(t, "/registry-test/")
	if _, ok := st.(*kv.Etcd); !ok {
		t.Fatalf("OpenStore([store] backend = etcd) = %T, want *kv.Etcd", st)
	}
	rev, err := st.Update(context.Background(), func(tx kv.Txn) error { return tx.Put("k", []byte("v")) })
	if err != nil || rev <= 0 {
		t.Fatalf("Update on the etcd store = %d, %v", rev, err)
	}
	c.Kill(0)
	start := time.Now()
	_, err = st.Update(context.Background(), func(tx kv.Txn) error { return tx.Put("k", []byte("w")) })
	if !errors.Is(err, kv.ErrUnavailable) || time.Since(start) > 3*cfg.Store.RequestTimeout {
		t.Errorf("Update with etcd down = %v after %v, want kv.ErrUnavailable within about %v", err, time.Since(start), cfg.Store.RequestTimeout)
	}
}

// [store] with client TLS: the registry reaches an etcd that serves https and requires client
// certificates, with the CA, certificate and key the config names; without a client certificate
// etcd refuses it.
func TestOpenStoreEtcdTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "etcd CA")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.pem)
	_, srvCert, srvKey := ca.issue(t, "etcd", true)
	_, cliCert, cliKey := ca.issue(t, "registry", false)
	files := &etcdtest.TLS{CA: caFile, ServerCert: write("server.pem", srvCert), ServerKey: write("server.key", srvKey),
		ClientCert: write("client.pem", cliCert), ClientKey: write("client.key", cliKey)}
	c, err := etcdtest.Start(etcdtest.Options{Members: 1, Dir: filepath.Join(dir, "etcd"), TLS: files})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conf := fmt.Sprintf("[store]\nbackend = \"etcd\"\nendpoints = [%q]\nrequest_timeout = \"2s\"\nca = %q\n", c.Endpoints()[0], caFile)
	tests := []struct {
		name, extra string
		ok          bool
	}{
		{"client certificate", fmt.Sprintf("cert = %q\nkey = %q\n", files.ClientCert, files.ClientKey), true},
		{"no client certificate", "", false},
	}
	for _, tc := range tests {
		cfg, _, err := ParseConfig([]byte(conf + tc.extra))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cfg.Store.String(), "TLS") {
			t.Errorf("Store = %s, want TLS", cfg.Store)
		}
		st, err := OpenStore(cfg)
		if err == nil {
			_, err = st.Update(context.Background(), func(tx kv.Txn) error { return tx.Put("k", []byte("v")) })
			st.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: OpenStore and Update = %v, want success %v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("%s: error %q does not say why", tc.name, err)
		}
	}
}

// TestStoreUnavailable503: a registry on etcd answers an admin change, an enrollment call and a
// node's login report with 503, a reason and Retry-After while etcd does not answer, within about
// its request timeout, and serves again by itself once etcd is back.
func TestStoreUnavailable503(t *testing.T) {
	t.Parallel()
	c, _, st := etcdStore(t, "/registry-503/")
	e := newEnv(t, envOptions{opts: func(o *Options) { o.Store = st }})
	e.addUser("ann", "alpha")
	node := e.addNode("n1", "alpha")

	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	for _, tt := range []struct {
		name string
		call func() int
	}{
		{"admin change", func() int {
			return e.admin("POST", "/v1/admin/users", map[string]any{"name": "bob", "scopes": []string{"alpha"}}, &out)
		}},
		{"enrollment", func() int {
			return e.do("POST", "/v1/enroll/begin", node, map[string]string{"user": "ann", "name": "phone"}, &out)
		}},
		{"login report", func() int {
			return e.do("POST", "/v1/sync/logins", node, map[string]any{"events": []map[string]any{
				{"kind": "failure", "user": "ann", "at": time.Now().UTC().Format(time.RFC3339)}}}, &out)
		}},
	} {
		start := time.Now()
		out = nil
		if st := tt.call(); st != 503 || !strings.Contains(fmt.Sprint(out["error"]), "etcd") {
			t.Errorf("%s with etcd down = %d %v, want 503 naming etcd", tt.name, st, out)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s with etcd down took %v, want about the request timeout", tt.name, took)
		}
	}

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for st := 0; st != 201; {
		if st = e.admin("POST", "/v1/admin/users", map[string]any{"name": "bob", "scopes": []string{"alpha"}}, nil); st != 201 && time.Now().After(deadline) {
			t.Fatalf("admin change after etcd came back = %d, want 201 within 20 s", st)
		}
		if st != 201 {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// etcdStore starts a one-member etcd and opens the registry's store on it as a config with a 1 s
// request timeout names it; both end with the test.
func etcdStore(t *testing.T, prefix string) (*etcdtest.Cluster, *Config, kv.Store) {
	t.Helper()
	c, err := etcdtest.Start(etcdtest.Options{Members: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, _, err := ParseConfig([]byte(fmt.Sprintf("[store]\nbackend = \"etcd\"\nendpoints = [%q]\nprefix = %q\nrequest_timeout = \"1s\"\n", c.Endpoints()[0], prefix)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return c, cfg, st
}
