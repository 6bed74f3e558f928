//go:build linux

package sync

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
	"github.com/pam-totp/pam-totp/pkg/promtext"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// scope is the cluster of every node and user of these tests unless a test says otherwise.
const scope = "hpc"

// registry is one totp-registry process with its files in a private directory.
type registry struct {
	t          *testing.T
	dir        string
	ca         *pamtest.CA
	url        string // https://127.0.0.1:PORT
	conf       string
	adminToken string
	tokenFile  string // the admin token, 0600, for totp-admin --admin-token-file
	admin      *adminclient.Client
	proc       *proc
	opts       regOptions
}

// regOptions are the registry config values a test may change.
type regOptions struct {
	HistoryKeep int64 // 0: 100 (the smallest allowed), so compaction is easy to reach
	// Etcd, if set, puts the registry's store on this etcd cluster (plain http on 127.0.0.1)
	// under Prefix (default: a fresh one) instead of a bbolt file.
	Etcd   *etcdtest.Cluster
	Prefix string
	// RequestTimeout is [store] request_timeout on etcd (default 2 s, so a lost quorum shows soon).
	RequestTimeout time.Duration
	// BookmarkInterval, if set, is the registry's bookmark_interval (default 10 s).
	BookmarkInterval time.Duration
	// Keys are more top-level registry.conf lines; Sections more sections (e.g. [mail]), written last.
	Keys, Sections string
}

// storeConfig is the registry.conf lines that choose the store.
func (o regOptions) storeConfig(data string) string {
	if o.Etcd == nil {
		return fmt.Sprintf("store = %q\nhistory_keep = %d\n", filepath.Join(data, "registry.db"), o.HistoryKeep)
	}
	eps, _ := json.Marshal(o.Etcd.Endpoints())
	timeout := o.RequestTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	return fmt.Sprintf("\n[store]\nbackend = \"etcd\"\nendpoints = %s\nprefix = %q\nrequest_timeout = %q\n",
		eps, o.Prefix, timeout.String())
}

// bookmarkConfig is the registry.conf line of BookmarkInterval, if set.
func (o regOptions) bookmarkConfig() string {
	if o.BookmarkInterval == 0 {
		return ""
	}
	return fmt.Sprintf("bookmark_interval = %q\n", o.BookmarkInterval)
}

// startRegistry writes a registry config (TLS with a certificate of c for 127.0.0.1), starts
// totp-registry and waits until GET /v1/status answers.
func startRegistry(t *testing.T, c *pamtest.CA, o regOptions) *registry {
	t.Helper()
	if o.HistoryKeep == 0 {
		o.HistoryKeep = 100
	}
	if o.Etcd != nil && o.Prefix == "" {
		o.Prefix = "/e2e-" + pamtest.RandName(8) + "/"
	}
	dir := pamtest.PrivateDir(t)
	keys := pamtest.Mkdir(t, filepath.Join(dir, "keys"), 0o700)
	line, err := seal.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	pamtest.WriteFile(t, filepath.Join(keys, "registry.keyring"), line, 0o600)
	adminToken := "adm-" + pamtest.RandName(32)
	sum := sha256.Sum256([]byte(adminToken))
	pamtest.WriteFile(t, filepath.Join(dir, "admins"), "alice "+hex.EncodeToString(sum[:])+"\n", 0o600)
	return launchRegistry(t, c, o, dir, adminToken)
}

// replica starts another totp-registry on r's etcd prefix, with r's keyring and admin tokens (a
// registry replica as docs/ha.md describes it): its own port, TLS certificate and log.
func (r *registry) replica() *registry {
	r.t.Helper()
	if r.opts.Etcd == nil {
		r.t.Fatal("replica: the registry is not on etcd")
	}
	dir := pamtest.PrivateDir(r.t)
	keys := pamtest.Mkdir(r.t, filepath.Join(dir, "keys"), 0o700)
	for _, f := range []struct{ from, to string }{
		{filepath.Join(r.dir, "keys", "registry.keyring"), filepath.Join(keys, "registry.keyring")},
		{filepath.Join(r.dir, "admins"), filepath.Join(dir, "admins")},
	} {
		data, err := os.ReadFile(f.from)
		if err != nil {
			r.t.Fatal(err)
		}
		pamtest.WriteFile(r.t, f.to, string(data), 0o600)
	}
	return launchRegistry(r.t, r.ca, r.opts, dir, r.adminToken)
}

// launchRegistry writes dir/registry.conf for the keyring and admin tokens already in dir,
// starts totp-registry and waits until GET /v1/status answers.
func launchRegistry(t *testing.T, c *pamtest.CA, o regOptions, dir, adminToken string) *registry {
	t.Helper()
	r := &registry{t: t, dir: dir, ca: c, conf: filepath.Join(dir, "registry.conf"), adminToken: adminToken, opts: o}
	port := freePort(t)
	r.url = fmt.Sprintf("https://127.0.0.1:%d", port)
	certFile, keyFile := c.ServerCert(t, dir, "registry-tls")
	data := pamtest.Mkdir(t, filepath.Join(dir, "data"), 0o700)
	r.tokenFile = filepath.Join(dir, "admin-token")
	pamtest.WriteFile(t, r.tokenFile, r.adminToken+"\n", 0o600)
	pamtest.WriteFile(t, r.conf, fmt.Sprintf(`listen = "127.0.0.1:%d"
tls_cert = %q
tls_key = %q
key_file = %q
admin_tokens_file = %q
issuer = "pam-totp test"
%s%s%s%s`, port, certFile, keyFile, filepath.Join(dir, "keys", "registry.keyring"),
		filepath.Join(dir, "admins"), o.Keys, o.bookmarkConfig(), o.storeConfig(data), o.Sections), 0o644)
	var err error
	r.admin, err = adminclient.New(adminclient.Options{URL: r.url, Token: r.adminToken, CAFile: c.PEMFile,
		Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r.proc = startProc(t, "totp-registry", filepath.Join(dir, "registry.log"), bin["totp-registry"], "--config", r.conf)
	r.waitReady(15 * time.Second)
	return r
}

// restart starts the registry again after a kill, and waits until it answers.
func (r *registry) restart() {
	r.t.Helper()
	r.proc.start()
	r.waitReady(15 * time.Second)
}

func (r *registry) waitReady(d time.Duration) {
	r.t.Helper()
	eventually(r.t, d, "totp-registry answers GET /v1/status", func() (bool, error) {
		if !r.proc.running() {
			r.t.Fatalf("totp-registry exited before it answered")
		}
		_, err := r.status()
		return err == nil, err
	})
}

// status is GET /v1/status.
func (r *registry) status() (adminclient.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return r.admin.Status(ctx)
}

func (r *registry) rev() int64 {
	r.t.Helper()
	st, err := r.status()
	if err != nil {
		r.t.Fatalf("registry status: %v", err)
	}
	return st.Revision
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// addUser registers a local user at the registry in scope.
func (r *registry) addUser(user string, scopes ...string) {
	r.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{scope}
	}
	if _, err := r.admin.AddUser(ctx(r.t), adminclient.NewUser{Name: user, Scopes: scopes}); err != nil {
		r.t.Fatalf("AddUser(%s): %v", user, err)
	}
}

// addToken adds an active SHA1/6/30 token with a fresh secret and returns it as the node
// stores it (for computing codes).
func (r *registry) addToken(user, name string) (token.Token, string) {
	r.t.Helper()
	tok, b32, err := r.tryAddToken(ctx(r.t), user, name)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok, b32
}

// tryAddToken is addToken for other goroutines than the test's: it returns the error.
func (r *registry) tryAddToken(ctx context.Context, user, name string) (token.Token, string, error) {
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		return token.Token{}, "", err
	}
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	added, err := r.admin.AddToken(ctx, user, adminclient.NewToken{Name: name, Secret: b32})
	if err != nil {
		return token.Token{}, "", fmt.Errorf("AddToken(%s) at %s: %w", user, r.url, err)
	}
	return token.Token{User: user, ID: added.ID, Name: name, Algorithm: totp.SHA1, Digits: 6, Period: 30,
		Secret: secret, State: token.Active}, b32, nil
}

// node is one simulated login node: a store directory, a pam_totp.conf with a [sync] section,
// a private PAM confdir with a service running pam_totp.so, and a totp-syncd process.
type node struct {
	t        *testing.T
	name     string
	dir      string
	storeDir string
	conf     string
	pamDir   string
	service  string
	credFile string
	// verifySock is the node's resident verifier ([sync] verify_socket).
	verifySock string
	metrics    string // http://127.0.0.1:PORT/metrics
	proc       *proc
}

// nodeOptions change how a node is set up.
type nodeOptions struct {
	Scope      string // "" is scope
	CAFile     string // "" is the registry's CA
	Credential string // "" is a fresh credential from node add; "-" writes none
	NoStart    bool   // write everything, do not start totp-syncd
	Policy     string // top-level keys of pam_totp.conf (the default policy)
	Bus        string // [sync] bus: the D-Bus address totp-syncd serves on and the helper uses
	RateLimit  string // the [rate_limit] section's lines; "" is fastRate
	Sync       string // more [sync] lines (with a registry)
	ConnectMS  int    // the module's connect_ms=; 0 is 300
	// Replicas are more replicas of the registry, listed after it in [sync] registry.
	Replicas []*registry
}

// fastRate keeps the rate limit out of the way of tests that do not test it.
const fastRate = `free_failures = 10
initial_backoff = "1s"
max_backoff = "2s"
lockout_after = 50`

// newNode registers a node at the registry (node add) and starts its totp-syncd. With r nil the
// node is standalone: no [sync] registry, totp-syncd is its enrollment authority.
func newNode(t *testing.T, r *registry, o nodeOptions) *node {
	t.Helper()
	if o.Scope == "" {
		o.Scope = scope
	}
	dir := pamtest.PrivateDir(t)
	n := &node{t: t, name: "node-" + pamtest.RandName(6), dir: dir,
		storeDir: pamtest.Mkdir(t, filepath.Join(dir, "store"), 0o700),
		conf:     filepath.Join(dir, "pam_totp.conf"),
		pamDir:   pamtest.Mkdir(t, filepath.Join(dir, "pam.d"), 0o755),
		service:  "pamtotp-" + pamtest.RandName(6),
		credFile: filepath.Join(dir, "node.credential"),
	}
	// Each node's resident verifier on a socket of its own (never the system's default path).
	n.verifySock = filepath.Join(dir, "run", "verify.sock")
	sync := fmt.Sprintf("metrics_listen = \"\"\nbus = %q\nverify_socket = %q\n", o.Bus, n.verifySock)
	if r != nil {
		if o.CAFile == "" {
			o.CAFile = r.ca.PEMFile
		}
		cred := o.Credential
		if cred == "" {
			nn, err := r.admin.AddNode(ctx(t), n.name, o.Scope)
			if err != nil {
				t.Fatalf("AddNode(%s): %v", n.name, err)
			}
			cred = nn.Credential
		}
		if cred != "-" {
			pamtest.WriteFile(t, n.credFile, cred+"\n", 0o600)
		}
		mport := freePort(t)
		n.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
		urls := []string{r.url}
		for _, rr := range o.Replicas {
			urls = append(urls, rr.url)
		}
		list, _ := json.Marshal(urls)
		sync = fmt.Sprintf("registry = %s\nca_file = %q\ncredential_file = %q\nmetrics_listen = \"127.0.0.1:%d\"\nbus = %q\nverify_socket = %q\n%s\n",
			list, o.CAFile, n.credFile, mport, o.Bus, n.verifySock, o.Sync)
	}
	if o.RateLimit == "" {
		o.RateLimit = fastRate
	}
	pamtest.WriteFile(t, n.conf, fmt.Sprintf(`issuer = "pam-totp test"
%s

[store]
dir = %q
open_timeout = "3s"

[rate_limit]
%s

[sync]
%s`, o.Policy, n.storeDir, o.RateLimit, sync), 0o644)
	// Logins go to the node's resident verifier, and to the helper when it does not answer.
	if o.ConnectMS == 0 {
		o.ConnectMS = 300
	}
	line := fmt.Sprintf("auth required %s helper=%s config=%s timeout=10 socket=%s connect_ms=%d %s\naccount required pam_permit.so\n",
		bin["pam_totp.so"], bin["pam-totp-helper"], n.conf, n.verifySock, o.ConnectMS, clk.ModuleArg())
	pamtest.WriteFile(t, filepath.Join(n.pamDir, n.service), line, 0o644)
	n.proc = &proc{t: t, name: "totp-syncd " + n.name, path: bin["totp-syncd"],
		args: []string{"--config", n.conf, "--debug"}, log: filepath.Join(dir, "syncd.log")}
	if !o.NoStart {
		n.start()
	}
	return n
}

// waitBus waits until the node's totp-syncd serves the D-Bus API.
func (n *node) waitBus() {
	n.t.Helper()
	eventually(n.t, 10*time.Second, n.name+" serves the D-Bus API", func() (bool, error) {
		return (n.logHas("D-Bus service") || n.logHas("starting standalone")) && !n.logHas("no D-Bus service"), nil
	})
}

// start starts (or restarts) the node's totp-syncd; the first start registers its cleanup.
func (n *node) start() {
	n.t.Helper()
	if n.proc.done == nil {
		n.t.Cleanup(func() {
			n.proc.kill()
			if n.t.Failed() {
				if b, err := os.ReadFile(n.proc.log); err == nil {
					n.t.Logf("%s log:\n%s", n.proc.name, tail(string(b), 40))
				}
			}
		})
	}
	n.proc.start()
}

func (n *node) tokens() *store.Tokens {
	return store.NewTokens(store.Options{Dir: n.storeDir, Timeout: 5 * time.Second})
}

// meta reads tokens.db's meta (an error while there is no tokens.db).
func (n *node) meta() (store.Meta, error) { return n.tokens().Meta() }

// waitRev waits until tokens.db has applied revision rev.
func (n *node) waitRev(rev int64, d time.Duration) time.Duration {
	n.t.Helper()
	return eventually(n.t, d, fmt.Sprintf("%s applies revision %d", n.name, rev), func() (bool, error) {
		m, err := n.meta()
		return err == nil && int64(m.Revision) >= rev, err
	})
}

// tokenState is the state of a user's token in tokens.db ("" when absent).
func (n *node) tokenState(user, id string) string {
	var state string
	_ = n.tokens().View(func(x *store.TokensTx) error {
		tok, err := x.Token(user, id)
		if err == nil {
			state = string(tok.State)
		}
		return nil
	})
	return state
}

// digest recomputes tokens.db's count and digest from its records and returns them with meta.
func (n *node) digest() (*syncframe.Digest, store.Meta) {
	n.t.Helper()
	d, m, err := n.tokens().Digest()
	if err != nil {
		n.t.Fatalf("%s: digest of tokens.db: %v", n.name, err)
	}
	return d, m
}

// login runs one libpam transaction on this node answering code.
func (n *node) login(user, code string) pamtest.Result {
	return pamtest.Run(pamtest.TxSpec{
		Service: n.service, User: user, ConfDir: n.pamDir,
		Answers: []string{code}, Timeout: 10 * time.Second,
	})
}

// metric reads one sample of the node's metrics ("" labels: the unlabelled sample); -1 when the
// metrics endpoint does not answer or has no such sample.
func (n *node) metric(name, labels string) float64 { return scrapeMetric(n.metrics, name, labels) }

// scrapeMetric is the value of one sample at a metrics URL, -1 if absent or unreachable.
func scrapeMetric(url, name, labels string) float64 {
	s, err := promtext.Scrape(url)
	if err != nil {
		return -1
	}
	if v, ok := s.Get(name, labels); ok {
		return v
	}
	return -1
}

// resyncs is the node's pam_totp_sync_resyncs_total of reason.
func (n *node) resyncs(reason string) float64 {
	return n.metric("pam_totp_sync_resyncs_total", `{reason="`+reason+`"}`)
}

// status runs `totp-syncd status --json` for the node.
func (n *node) status() (map[string]any, error) {
	out, err := runCmd(bin["totp-syncd"], "status", "--config", n.conf, "--json")
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("totp-syncd status --json: %v: %s", err, out)
	}
	return m, nil
}

// logHas reports whether the node's totp-syncd log contains sub.
func (n *node) logHas(sub string) bool { return strings.Contains(n.readLog(), sub) }

// readLog is the node's totp-syncd log so far.
func (n *node) readLog() string {
	b, _ := os.ReadFile(n.proc.log)
	return string(b)
}

// code is a token's code of step.
func code(tok token.Token, step uint64) string {
	return totp.Code(tok.Secret, tok.Params(), step)
}

// nextStep moves every component's clock to the start of the next 30 s step and returns it, so a
// test that uses neighbouring steps has the whole step before the step changes. The clock keeps
// the wall clock again once the test ends.
func nextStep(t *testing.T) uint64 {
	t.Helper()
	t.Cleanup(func() { clk.Set(t, time.Now()) })
	return clk.NextStep(t, 30)
}

// tlsClient is an HTTP client that trusts only c's certificate.
func tlsClient(t *testing.T, c *pamtest.CA) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func base32NoPad(b []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// metricSum is the sum of every sample of a metric (all label sets); -1 when unreachable.
func (n *node) metricSum(name string) float64 {
	s, err := promtext.Scrape(n.metrics)
	if err != nil {
		return -1
	}
	return s.Sum(name)
}

// logCount counts the lines of the node's totp-syncd log that contain sub.
func (n *node) logCount(sub string) int {
	b, _ := os.ReadFile(n.proc.log)
	return strings.Count(string(b), sub)
}

// nodeWithToken starts a registry and one node of it, with a test user who has one active
// token, synced to the node.
func nodeWithToken(t *testing.T) (*registry, *node, string, token.Token) {
	t.Helper()
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	n := newNode(t, r, nodeOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	tok, _ := r.addToken(user, "phone")
	n.waitRev(r.rev(), 10*time.Second)
	return r, n, user, tok
}
