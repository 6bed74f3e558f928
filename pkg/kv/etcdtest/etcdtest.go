// Package etcdtest starts a real etcd cluster on 127.0.0.1 for tests: its members are etcd server
// processes (build/tools/etcd, built by `make etcd` at the version pinned in tools/etcd/go.mod),
// each with free ports and a data directory of its own, speaking plain HTTP on loopback. A test
// can kill a member with SIGKILL, stop it, and restart it on the same data and ports.
//
// One cluster is meant to serve a whole test binary (start it in TestMain) with a fresh key
// prefix per test: starting etcd takes about a second.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvBinary names the environment variable that overrides where the etcd server binary is.
const EnvBinary = "PAM_TOTP_ETCD"

// Options tune Start.
type Options struct {
	// Members is the cluster size (default 3).
	Members int
	// Dir holds the members' data directories and logs (default: a new temporary directory,
	// removed by Close).
	Dir string
	// StartTimeout bounds the wait for the cluster to become healthy (default 60 s).
	StartTimeout time.Duration
	// MaxTxnOps is etcd's --max-txn-ops (default 10000: the store's Update is one transaction
	// and the tests rewrite hundreds of keys at once; etcd's own default is 128).
	MaxTxnOps int
	// TLS, if set, serves the client URLs over https and requires client certificates from CA.
	TLS *TLS
}

// TLS is the PEM files of a cluster that speaks https to its clients (peers stay on http).
type TLS struct {
	CA                    string // trusted for client certificates; it also signed ServerCert
	ServerCert, ServerKey string // for 127.0.0.1
	ClientCert, ClientKey string // a client's, for the health checks
}

// Cluster is a running etcd cluster. Its methods are safe for concurrent use.
type Cluster struct {
	tls     *tls.Config // for the health checks; nil on http
	bin     string
	dir     string
	ownDir  bool
	timeout time.Duration
	members []*Member
}

// Member is one etcd server of a Cluster.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT
	PeerURL   string
	dataDir   string
	logPath   string
	args      []string
	bin       string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Binary returns the etcd server binary the tests use: $PAM_TOTP_ETCD, or build/tools/etcd in
// the repository that contains the working directory. The error says to run `make etcd`.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("etcd server from $%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(b, []byte("module github.com/pam-totp/pam-totp\n")) {
			p := filepath.Join(dir, "build", "tools", "etcd")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("etcd server for tests not found at %s: run `make etcd` in %s (or set $%s)", p, dir, EnvBinary)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("etcd server for tests: no pam-totp checkout above the working directory: run `make etcd` and set $%s", EnvBinary)
		}
		dir = parent
	}
}

// Start starts a cluster and waits until every member is healthy. Call Close when done.
func Start(opts Options) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	n := opts.Members
	if n <= 0 {
		n = 3
	}
	c := &Cluster{bin: bin, dir: opts.Dir, timeout: opts.StartTimeout}
	if c.timeout <= 0 {
		c.timeout = 60 * time.Second
	}
	maxOps := opts.MaxTxnOps
	if maxOps <= 0 {
		maxOps = 10000
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "etcdtest-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	} else if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		c.Close()
		return nil, err
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
		if c.tls, err = clientTLS(opts.TLS); err != nil {
			c.Close()
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			bin:       bin,
		}
		m.dataDir = filepath.Join(c.dir, m.Name)
		m.logPath = filepath.Join(c.dir, m.Name+".log")
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.members = append(c.members, m)
	}
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--max-txn-ops", fmt.Sprint(maxOps),
			"--listen-metrics-urls", "", // no extra listener
			"--logger", "zap",
			"--log-level", "warn",
		}
		if t := opts.TLS; t != nil {
			m.args = append(m.args, "--cert-file", t.ServerCert, "--key-file", t.ServerKey,
				"--trusted-ca-file", t.CA, "--client-cert-auth")
		}
		if err := m.start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for i := range c.members {
		if err := c.WaitHealthy(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Members returns the cluster's members in order.
func (c *Cluster) Members() []*Member { return c.members }

// Kill sends SIGKILL to member i and waits for it to exit.
func (c *Cluster) Kill(i int) error { return c.members[i].signal(syscall.SIGKILL) }

// Stop stops member i with SIGTERM (a clean shutdown) and waits for it to exit.
func (c *Cluster) Stop(i int) error { return c.members[i].signal(syscall.SIGTERM) }

// Restart starts member i again on its data directory and ports, after Kill or Stop. It does not
// wait for health: see WaitHealthy (a member alone of three has no quorum and is not healthy).
func (c *Cluster) Restart(i int) error {
	m := c.members[i]
	m.mu.Lock()
	running := m.cmd != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("etcd member %s is running", m.Name)
	}
	return m.start()
}

// WaitHealthy waits until member i answers /health with "true" (it is up and the cluster has a
// leader and quorum), or ctx ends, or the member exits.
func (c *Cluster) WaitHealthy(ctx context.Context, i int) error {
	m := c.members[i]
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		m.mu.Lock()
		exited := m.exited
		m.mu.Unlock()
		if exited == nil {
			return fmt.Errorf("etcd member %s is not running", m.Name)
		}
		if last = m.health(ctx, client); last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd member %s exited while starting; its log %s ends:\n%s", m.Name, m.logPath, m.LogTail(20))
		case <-ctx.Done():
			return fmt.Errorf("etcd member %s not healthy: %v (log %s ends:\n%s)", m.Name, last, m.logPath, m.LogTail(20))
		case <-tick.C:
		}
	}
}

// Leader returns the index of the member that leads the cluster, asking each running member
// for its status (etcd's /v3/maintenance/status) until one says it is the leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	defer client.CloseIdleConnections()
	var last error
	for i, m := range c.members {
		st, err := m.status(ctx, client)
		if err != nil {
			last = err
			continue
		}
		if st.Leader != "" && st.Leader == st.Header.MemberID {
			return i, nil
		}
	}
	return -1, fmt.Errorf("etcd: no member says it leads (last error: %v)", last)
}

// memberStatus is the part of etcd's StatusResponse that Leader reads (JSON of the gRPC
// gateway: 64-bit ids as decimal strings).
type memberStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string `json:"leader"`
}

func (m *Member) status(ctx context.Context, client *http.Client) (memberStatus, error) {
	var st memberStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.ClientURL+"/v3/maintenance/status", strings.NewReader("{}"))
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("etcd member %s: /v3/maintenance/status: %s", m.Name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("etcd member %s: /v3/maintenance/status: %w", m.Name, err)
	}
	return st, nil
}

// Close kills every member and removes the data when Start made the directory.
func (c *Cluster) Close() {
	for _, m := range c.members {
		m.signal(syscall.SIGKILL)
	}
	if c.ownDir {
		os.RemoveAll(c.dir)
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	// The member dies with the test binary, even when the test binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	return nil
}

// signal sends sig to a running member and waits for it to exit; a stopped member is a no-op.
func (m *Member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd, m.exited = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal etcd member %s: %w", m.Name, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("etcd member %s did not exit within 30 s of %v; killed", m.Name, sig)
	}
}

func (m *Member) health(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("/health: %w", err)
	}
	if h.Health != "true" {
		return fmt.Errorf("/health: %s %s", h.Health, h.Reason)
	}
	return nil
}

// LogTail returns the last n lines of the member's log, for failure messages.
func (m *Member) LogTail(n int) string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clientTLS is the TLS config of the health checks.
func clientTLS(t *TLS) (*tls.Config, error) {
	ca, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcdtest: no certificate in %s", t.CA)
	}
	cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
