// Package busapitest starts a whole enrollment path for tests: a private dbus-daemon configured
// like the system bus, test users and bus clients running as them, the real registry in-process
// with a throwaway CA, and a node (the syncer and the D-Bus service of package busapi) following
// it. Tests of busapi and of the totp CLI use it; it needs root, dbus-daemon, useradd and
// userdel, and skips without them.
package busapitest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/registry"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/store"
)

const adminToken = "busapitest-admin-token"

// here is this file's directory: the repository's files are found from it.
func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Bus is a private dbus-daemon.
type Bus struct {
	Addr string
	Dir  string // 0755: reachable by test users
}

// BusConfig writes dir/bus.conf: a private system-like bus with contrib/dbus's policy, listening
// on dir/bus. It returns the file and the socket's path.
func BusConfig(t testing.TB, dir string) (confPath, socket string) {
	t.Helper()
	policy := filepath.Join(here(), "..", "..", "..", "contrib", "dbus", "io.github.pamtotp.Sync1.conf")
	tmpl, err := os.ReadFile(filepath.Join(here(), "..", "..", "..", "contrib", "dbus", "private-system-bus.conf.in"))
	if err != nil {
		t.Fatal(err)
	}
	socket = filepath.Join(dir, "bus")
	conf := strings.NewReplacer("@SOCKET@", socket, "@POLICY@", policy).Replace(string(tmpl))
	confPath = filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return confPath, socket
}

// StartBus starts a private bus with contrib/dbus's policy; it skips when not root or without
// dbus-daemon.
func StartBus(t testing.TB) *Bus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus): ", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the service owns its name as root and the clients run as test users")
	}
	dir, err := os.MkdirTemp("", "busapitest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	confPath, _ := BusConfig(t, dir)
	cmd := exec.Command(daemon, "--config-file="+confPath, "--print-address", "--nofork")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addrc <- strings.TrimSpace(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-addrc:
		if addr == "" {
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		return &Bus{Addr: addr, Dir: dir}
	case <-time.After(10 * time.Second):
		t.Fatalf("dbus-daemon did not start: %s", stderr.String())
	}
	return nil
}

// User creates a user without a home for the test and removes it afterwards.
func User(t testing.TB, name string) *user.User {
	t.Helper()
	for _, tool := range []string{"useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	exec.Command("userdel", name).Run() // left over from a killed run
	var out []byte
	var err error
	for range 20 { // shadow's tools fail while another one holds the lock
		if out, err = exec.Command("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// IDs returns u's uid and gid.
func IDs(u *user.User) (uint32, uint32) {
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(uid), uint32(gid)
}

// The environment of a Client's run: the call to make and the bus address. A test binary that
// uses Client checks for ClientEnv in its TestMain, makes the call and prints the outcome.
const (
	ClientEnv    = "BUSAPI_TEST_CLIENT"
	ClientBusEnv = "BUSAPI_TEST_BUS"
)

// Client runs a copy of the test binary, reachable by the test users, as a bus client under
// other uids.
type Client struct {
	bin  string
	addr string
}

// NewClient copies the test binary into b's directory.
func NewClient(t testing.TB, b *Bus) *Client {
	t.Helper()
	return &Client{bin: CopySelf(t, b, "client"), addr: b.Addr}
}

// CopySelf copies the running test binary into b's directory (reachable by the test users)
// under name and returns its path.
func CopySelf(t testing.TB, b *Bus, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(b.Dir, name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// Run runs the copy as uid/gid with call in ClientEnv, runs no tests, and returns its output.
func (c *Client) Run(t testing.TB, uid, gid uint32, call string) []byte {
	t.Helper()
	cmd := exec.Command(c.bin, "-test.run=^$")
	// No 1 s pause of the race detector at exit on every call.
	cmd.Env = []string{ClientEnv + "=" + call, ClientBusEnv + "=" + c.addr, "PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client %s as uid %d: %v\n%s", call, uid, err, stderr.String())
	}
	return out
}

// Registry is the real registry served over TLS from a throwaway CA.
type Registry struct {
	t     testing.TB
	URL   string
	CAPEM []byte
	c     *http.Client
}

// StartRegistry starts a registry whose scope "test" holds users.
func StartRegistry(t testing.TB, users ...string) *Registry {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "registry")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := kv.OpenBolt(filepath.Join(dir, "registry.db"), kv.BoltOptions{Timeout: time.Second, HistoryLimit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	line, err := seal.GenerateKey(rand.Reader, "k1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := seal.ParseKeyring([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cfg := registry.DefaultConfig()
	cfg.BookmarkInterval = time.Second
	cfg.Issuer = "Test HPC"
	srv, err := registry.New(context.Background(), registry.Options{Config: cfg, Store: st, Sealer: keys,
		Admins:   []registry.AdminToken{{Name: "admin", Hash: sha256.Sum256([]byte(adminToken))}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Notifier: discardMail{}})
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey, caPEM := newCA(t)
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert(t, caCert, caKey)}, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	t.Cleanup(func() {
		srv.Shutdown()
		ts.CloseClientConnections()
		ts.Close()
		st.Close()
	})
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	r := &Registry{t: t, URL: ts.URL, CAPEM: caPEM,
		c: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}}
	for _, u := range users {
		r.Admin(201, "POST", "/v1/admin/users", map[string]any{"name": u, "scopes": []string{"test"}}, nil)
	}
	return r
}

// discardMail takes the registry's notices.
type discardMail struct{}

func (discardMail) Send(mail.Message) bool { return true }

// Admin makes an admin request, fails the test unless it answers want, and decodes into out.
func (r *Registry) Admin(want int, method, path string, body, out any) {
	r.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := r.c.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		r.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Node is a node following a registry: the syncer and the D-Bus service on a bus.
type Node struct {
	Config  config.Config
	Service *busapi.Service
	Log     interface{ String() string } // the service's and the syncer's log
}

// StartNode registers a node with r and runs its syncer and D-Bus service on b.
func StartNode(t testing.TB, b *Bus, r *Registry) *Node {
	t.Helper()
	var out struct {
		Credential string `json:"credential"`
	}
	r.Admin(201, "POST", "/v1/admin/nodes", map[string]string{"name": "node1", "scope": "test"}, &out)
	root := t.TempDir()
	storeDir := filepath.Join(root, "store")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, cred := filepath.Join(root, "ca.pem"), filepath.Join(root, "node.credential")
	if err := os.WriteFile(ca, r.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cred, []byte(out.Credential+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Store.Dir = storeDir
	cfg.Sync = config.Sync{Registry: config.URLs{r.URL}, CAFile: ca, CredentialFile: cred}
	logBuf := &SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	syncer, err := nodesync.New(nodesync.Options{Sync: cfg.Sync, Store: store.Options{Dir: storeDir, Timeout: time.Second},
		BookmarkInterval: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Log: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { syncer.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	svc, err := busapi.Open(ctx, b.Addr, busapi.Options{Config: &cfg, Metrics: syncer.Metrics(), Kick: syncer.Kick, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return &Node{Config: cfg, Service: svc, Log: logBuf}
}

// SyncBuffer is a log sink safe for the loggers' goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was logged.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "busapitest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serverCert(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
