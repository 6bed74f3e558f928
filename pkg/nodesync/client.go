package nodesync

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// Sentinel errors.
var (
	// ErrCredential: the node's credential file is missing, unsafe or malformed.
	ErrCredential = errors.New("node credential unusable")
	// ErrCA: the pinned CA file is missing, unsafe or holds no certificate.
	ErrCA = errors.New("registry CA unusable")
	// ErrRefused: the registry refused the node (401, 403).
	ErrRefused = errors.New("registry refused this node")
	// ErrIdle: the stream sent nothing for three bookmark intervals.
	ErrIdle = errors.New("stream idle")
)

// maxCredential bounds the credential file; maxCA the CA bundle.
const (
	maxCredential = 4 << 10
	maxCA         = 1 << 20
)

// ReadCredential reads the node's bearer credential: a root-owned 0600 regular file (no symlink)
// holding one line. The value never appears in an error.
func ReadCredential(path string) (string, error) {
	b, err := securefile.ReadFile(path, securefile.Rule{Forbidden: 0o077, What: "node credential"}, maxCredential)
	if err != nil {
		return "", fmt.Errorf("credential_file: %w: %w", err, ErrCredential)
	}
	c := strings.TrimSpace(string(b))
	if c == "" {
		return "", fmt.Errorf("credential_file %s: empty: %w", path, ErrCredential)
	}
	for _, r := range c {
		if r <= ' ' || r >= 0x7f {
			return "", fmt.Errorf("credential_file %s: not a single token of printable ASCII: %w", path, ErrCredential)
		}
	}
	return c, nil
}

// TLSConfig builds the client TLS configuration: only the CA in ca_file is trusted (no system
// roots), TLS 1.2 or later, and the client certificate when client_cert is set.
func TLSConfig(s config.Sync) (*tls.Config, error) {
	pem, err := securefile.ReadFile(s.CAFile, securefile.Rule{Forbidden: 0o022, What: "registry CA"}, maxCA)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w: %w", err, ErrCA)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it: %w", s.CAFile, ErrCA)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if s.ClientCert != "" {
		certPEM, err := securefile.ReadFile(s.ClientCert, securefile.Rule{Forbidden: 0o022, What: "client certificate"}, maxCA)
		if err != nil {
			return nil, fmt.Errorf("client_cert: %w", err)
		}
		keyPEM, err := securefile.ReadFile(s.ClientKey, securefile.Rule{Forbidden: 0o077, What: "client key"}, maxCA)
		if err != nil {
			return nil, fmt.Errorf("client_key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client_cert %s and client_key %s do not make a key pair: %v", s.ClientCert, s.ClientKey, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// CheckFiles checks what a node with a registry needs before it starts: the CA file (https), and
// the credential file or the client certificate and key.
func CheckFiles(s config.Sync) error {
	if err := s.Registry.Validate(); err != nil {
		return fmt.Errorf("sync.registry: %w", err)
	}
	if slices.ContainsFunc(s.Registry, func(u string) bool { return strings.HasPrefix(u, "https:") }) {
		if _, err := TLSConfig(s); err != nil {
			return err
		}
	}
	if s.ClientCert == "" {
		if _, err := ReadCredential(s.CredentialFile); err != nil {
			return err
		}
	}
	return nil
}

// client talks HTTP to the replicas of one registry store, following one at a time
// (docs/sync-protocol.md, "Fail-over"): the sync stream, acks, used marks, claims and enrollment
// calls all go to the followed replica, and a failure moves every caller on to the next one in the
// configured order. It does not go back to an earlier replica while the one it follows works:
// replicas of one store are equal, and moving only on failure keeps a node from flapping.
type client struct {
	bases    []*url.URL
	credFile string // "" with mTLS
	http     *http.Client
	agent    string
	now      func() time.Time
	onMove   func(from, to string, since time.Time) // called after each move (metrics, log); may be nil

	mu    sync.Mutex
	cur   int       // index of the followed replica
	since time.Time // when cur was chosen
}

func newClient(s config.Sync, headerTimeout time.Duration, agent string, now func() time.Time) (*client, error) {
	if len(s.Registry) == 0 {
		return nil, errors.New("sync.registry is not set: this node is standalone")
	}
	c := &client{agent: agent, now: now}
	https := false
	for _, r := range s.Registry {
		base, err := url.Parse(strings.TrimSuffix(r, "/"))
		if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
			return nil, fmt.Errorf("sync.registry %q: want https://HOST[:PORT]", r)
		}
		https = https || base.Scheme == "https"
		c.bases = append(c.bases, base)
	}
	tr := &http.Transport{
		Proxy:                 nil, // a login node talks to its registry directly
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	if https {
		var err error
		if tr.TLSClientConfig, err = TLSConfig(s); err != nil {
			return nil, err
		}
	}
	c.http = &http.Client{Transport: tr}
	if s.ClientCert == "" {
		c.credFile = s.CredentialFile
		if _, err := ReadCredential(c.credFile); err != nil {
			return nil, err
		}
	}
	c.since = now()
	return c, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// current returns the followed replica's index and URL, and since when it is followed.
func (c *client) current() (int, string, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, c.bases[c.cur].String(), c.since
}

// moveFrom moves on from replica i to the next one in the list (after the last, the first),
// unless another caller already moved away from i. It returns the followed replica's index.
func (c *client) moveFrom(i int) int {
	c.mu.Lock()
	if c.cur != i || len(c.bases) == 1 {
		defer c.mu.Unlock()
		return c.cur
	}
	c.cur, c.since = (i+1)%len(c.bases), c.now()
	from, to, cur, since := c.bases[i].String(), c.bases[c.cur].String(), c.cur, c.since
	c.mu.Unlock()
	if c.onMove != nil {
		c.onMove(from, to, since)
	}
	return cur
}

// do sends one request to the followed replica.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Response, error) {
	i, _, _ := c.current()
	return c.doAt(ctx, i, method, path, query, body)
}

// doMoving sends one request to the followed replica and, when that replica cannot have taken it
// (notTaken), moves on and sends it to the next, each replica once at most. So a request that
// is not idempotent (a claim, an enrollment step) is never sent twice to a store that may have
// applied it; the rare 503 of an etcd commit whose outcome is unknown fails closed at the next
// replica (the claim is seen as used, the pending token as gone).
func (c *client) doMoving(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Response, error) {
	for tries := 1; ; tries++ {
		i, _, _ := c.current()
		resp, err := c.doAt(ctx, i, method, path, query, body)
		if tries >= len(c.bases) || ctx.Err() != nil || !notTaken(resp, err) {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
		}
		c.moveFrom(i)
	}
}

// notTaken reports whether a replica certainly did not act on a request: the connection could not
// be made, or it answered 503 (shutting down, or its store is unreachable and nothing was written).
func notTaken(resp *http.Response, err error) bool {
	if err != nil {
		var op *net.OpError
		return errors.As(err, &op) && op.Op == "dial"
	}
	return resp.StatusCode == http.StatusServiceUnavailable
}

// doAt sends one request to replica i. The credential is read from its file each time, so a
// rotated one is picked up at the next connection.
func (c *client) doAt(ctx context.Context, i int, method, path string, query url.Values, body []byte) (*http.Response, error) {
	u := *c.bases[i]
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.agent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.credFile != "" {
		cred, err := ReadCredential(c.credFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", method, c.bases[i].Host, path, err)
	}
	return resp, nil
}

// statusError turns a non-2xx answer into an error with the registry's message (bounded).
func statusError(method, path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	err := fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		err = fmt.Errorf("%w: %w (check credential_file, client_cert and `totp-admin --registry URL node list`)", err, ErrRefused)
	}
	return &statusErr{status: resp.StatusCode, err: err}
}

// statusErr is a non-2xx answer, with its status.
type statusErr struct {
	status int
	err    error
}

func (e *statusErr) Error() string { return e.err.Error() }
func (e *statusErr) Unwrap() error { return e.err }

// idleBody cancels its request when no byte arrives for d.
type idleBody struct {
	r     io.ReadCloser
	timer *time.Timer
	d     time.Duration
	idled atomic.Bool
}

func newIdleBody(r io.ReadCloser, d time.Duration, cancel context.CancelFunc) *idleBody {
	b := &idleBody{r: r, d: d}
	b.timer = time.AfterFunc(d, func() { b.idled.Store(true); cancel() })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	// Once the timer fired, whatever the cancelled read returns (an error, or a plain EOF from
	// some transports) is the idle timeout.
	if err != nil && b.idled.Load() {
		err = fmt.Errorf("no data for %s: %w", b.d, ErrIdle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.r.Close()
}
