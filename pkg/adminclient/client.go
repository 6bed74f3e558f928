package adminclient

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
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Sentinel errors. An *APIError matches the first three with errors.Is.
var (
	// ErrUnauthorized: the registry answered 401 or 403 to the admin token.
	ErrUnauthorized = errors.New("the registry refused the admin token")
	// ErrNotFound: the registry answered 404 (no such user, token or node).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the registry answered 409 (the user or node exists already, and the like).
	ErrConflict = errors.New("conflict")
	// ErrInsecure: a plain http:// URL for a host that is not loopback.
	ErrInsecure = errors.New("plain http is only allowed to a loopback address; use https")
	// ErrBadAnswer: the registry's answer is not what the protocol says.
	ErrBadAnswer = errors.New("unexpected answer from the registry")
)

// Defaults.
const (
	// DefaultTimeout bounds one call (connect, TLS, request and the whole answer).
	DefaultTimeout = 30 * time.Second
	// ImportTimeout bounds an import, which may carry many thousand tokens.
	ImportTimeout = 10 * time.Minute
	// maxAnswer bounds an answer's body: a listing of every user of a large site fits.
	maxAnswer = 64 << 20
	// maxErrorBody bounds the body read for an error answer.
	maxErrorBody = 64 << 10
	// maxReason bounds the reason sent in X-Reason.
	maxReason = 1024
	// maxTokenFile bounds an admin token file.
	maxTokenFile = 4096
)

// Options configure a Client.
type Options struct {
	// URL is the registry's base URL, https://HOST[:PORT] (a path prefix is kept), or the URLs
	// of several replicas of one registry separated by commas, tried in that order (Client.call
	// says when a call moves on to the next).
	URL string
	// Token is the admin bearer token (see ReadTokenFile).
	Token string
	// CAFile, if set, is a PEM file of the CA(s) that alone are trusted for the registry.
	// Empty means the system roots.
	CAFile string
	// Timeout bounds each call; zero means DefaultTimeout. Imports get at least ImportTimeout.
	Timeout time.Duration
	// Reason, if set, is sent with every change as X-Reason for the audit log.
	Reason string
	// UserAgent is sent as User-Agent.
	UserAgent string
	// Transport replaces the HTTP transport (tests); CAFile is then ignored.
	Transport http.RoundTripper
}

// Client talks to one registry's admin API, through one of its replicas. It is safe for
// concurrent use.
type Client struct {
	bases   []*url.URL
	mu      sync.Mutex
	cur     int // the replica calls go to first: the last one that answered
	token   string
	reason  string
	agent   string
	timeout time.Duration
	http    *http.Client
}

// New checks o and returns a Client. It does not contact the registry.
func New(o Options) (*Client, error) {
	var bases []*url.URL
	for _, s := range strings.Split(o.URL, ",") {
		if s = strings.TrimSpace(s); s == "" && strings.Contains(o.URL, ",") {
			continue
		}
		base, err := parseURL(s)
		if err != nil {
			return nil, err
		}
		bases = append(bases, base)
	}
	if len(bases) == 0 {
		return nil, errors.New("no registry URL")
	}
	if o.Token == "" {
		return nil, errors.New("no admin token")
	}
	if !validHeader(o.Token) || strings.ContainsAny(o.Token, " \t") {
		return nil, errors.New("the admin token contains spaces or control characters")
	}
	if err := checkReason(o.Reason); err != nil {
		return nil, err
	}
	rt := o.Transport
	if rt == nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pool, err := loadCA(o.CAFile)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = pool
		}
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tc,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 0, // the per-call deadline covers it (imports wait long)
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       30 * time.Second,
			ForceAttemptHTTP2:     true,
		}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	agent := o.UserAgent
	if agent == "" {
		agent = "pam-totp-adminclient"
	}
	return &Client{
		bases: bases, token: o.Token, reason: o.Reason, agent: agent, timeout: timeout,
		http: &http.Client{
			Transport: rt,
			// A redirect would take the admin token somewhere the admin did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// URL returns the base URL of the replica calls go to first (without any credential).
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.cur].String()
}

// parseURL accepts https://HOST[:PORT][/PREFIX], and http:// only for a loopback host.
func parseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("no registry URL")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("registry URL %q: want https://HOST[:PORT]", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("registry URL %s: no user, query or fragment allowed", u.Redacted())
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("registry URL %s: %w", u, ErrInsecure)
		}
	default:
		return nil, fmt.Errorf("registry URL %q: want https://HOST[:PORT]", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// ReadTokenFile reads an admin token from path: one line, surrounding white space trimmed. The
// file must be a regular file (not a symlink) that only its owner can read or write, as for an
// SSH private key.
func ReadTokenFile(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if err == unix.ELOOP {
			return "", fmt.Errorf("admin token file %s: is a symlink; give the file itself", path)
		}
		return "", fmt.Errorf("admin token file: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("admin token file %s: not a regular file", path)
	case st.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("admin token file %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("admin token file %s: longer than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return "", fmt.Errorf("admin token file %s: empty", path)
	case strings.ContainsAny(tok, " \t\r\n") || !validHeader(tok):
		return "", fmt.Errorf("admin token file %s: want one token on one line", path)
	}
	return tok, nil
}

func checkReason(r string) error {
	switch {
	case len(r) > maxReason:
		return fmt.Errorf("reason: longer than %d bytes", maxReason)
	case !utf8.ValidString(r) || !validHeader(r):
		return errors.New("reason: contains control characters or invalid UTF-8")
	}
	return nil
}

// validHeader reports whether s can be a header value as is: no control characters.
func validHeader(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return false
		}
	}
	return true
}

// APIError is an error answer of the registry.
type APIError struct {
	Status  int    // HTTP status
	Message string // the registry's "error" text; may be empty
	// Invalid lists the invalid lines of a refused import.
	Invalid []LineError
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
		if msg == "" {
			msg = "error"
		}
		msg = fmt.Sprintf("registry answered %d (%s)", e.Status, msg)
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		if e.Message == "" {
			return ErrUnauthorized.Error()
		}
		return ErrUnauthorized.Error() + ": " + msg
	}
	return msg
}

// Is matches ErrUnauthorized, ErrNotFound and ErrConflict by status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	}
	return false
}

// request describes one call.
type request struct {
	method string
	path   []string // segments, each escaped
	query  url.Values
	body   io.Reader
	ctype  string
	change bool // carries X-Reason
	long   bool // import: longer deadline
}

// call sends r and decodes a 2xx JSON answer into out (nil: the body is discarded). With several
// replicas it starts at the one that answered last and moves on to the next when the replica
// certainly did not act on the call: the connection could not be made (the request never left),
// or a read (GET) was answered 503. A change answered 503 is not repeated: its replica's store
// may have committed it without saying so (an etcd timeout), and a repeat could apply it twice.
func (c *Client) call(ctx context.Context, r request, out any) error {
	timeout := c.timeout
	if r.long && timeout < ImportTimeout {
		timeout = ImportTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.mu.Lock()
	first := c.cur
	c.mu.Unlock()
	seeker, _ := r.body.(io.Seeker)
	for i := 0; ; i++ {
		at := (first + i) % len(c.bases)
		last := i == len(c.bases)-1 || r.body != nil && seeker == nil
		if i > 0 && seeker != nil {
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
		retry, err := c.callAt(ctx, c.bases[at], r, out, timeout)
		if !retry || last || ctx.Err() != nil {
			if !retry {
				c.mu.Lock()
				c.cur = at
				c.mu.Unlock()
			}
			return err
		}
	}
}

// callAt makes call's request to one replica. retry says that the replica did not act on it.
func (c *Client) callAt(ctx context.Context, base *url.URL, r request, out any, timeout time.Duration) (retry bool, err error) {
	u := *base
	for _, seg := range r.path {
		u.Path += "/" + seg
		u.RawPath += "/" + url.PathEscape(seg)
	}
	if u.RawPath == u.Path {
		u.RawPath = ""
	}
	u.RawQuery = r.query.Encode()
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", r.method, u.Path, err)
	}
	if r.body != nil {
		req.Body = io.NopCloser(r.body) // kept open, so a retry can read it again
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.change && c.reason != "" {
		req.Header.Set("X-Reason", c.reason)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		notSent := errors.As(err, &op) && op.Op == "dial"
		if len(c.bases) > 1 {
			return notSent, fmt.Errorf("%s: %w", base.Host, transportError(u.Path, err, timeout))
		}
		return notSent, transportError(u.Path, err, timeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode == http.StatusServiceUnavailable && r.method == http.MethodGet, apiError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return false, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return false, transportError(u.Path, err, timeout)
	}
	if len(data) > maxAnswer {
		return false, fmt.Errorf("%s %s: answer larger than %d bytes: %w", r.method, u.Path, maxAnswer, ErrBadAnswer)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return false, nil // 200 without a body: nothing to decode (callers check what they need)
	}
	if err := json.Unmarshal(data, out); err != nil {
		// json's errors may quote the answer, which can hold a secret: keep only the kind.
		return false, fmt.Errorf("%s %s: the answer is not the JSON expected: %w", r.method, u.Path, ErrBadAnswer)
	}
	return false, nil
}

// transportError says what failed, without url.Error's repetition of the URL, and names the usual
// causes.
func transportError(path string, err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var uae x509.UnknownAuthorityError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("registry %s: no answer within %s", path, timeout)
	case errors.As(err, &uae):
		return fmt.Errorf("registry: its certificate is not signed by a trusted CA (give the registry's CA with --ca-file): %w", err)
	}
	return fmt.Errorf("registry: %w", err)
}

func apiError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var body struct {
		Error   string      `json:"error"`
		Invalid []LineError `json:"invalid"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Message, e.Invalid = body.Error, body.Invalid
	}
	return e
}

// jsonBody encodes v as a request body.
func jsonBody(v any) (io.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// get, send: shorthands for JSON calls.
func (c *Client) get(ctx context.Context, out any, path ...string) error {
	return c.call(ctx, request{method: http.MethodGet, path: path}, out)
}

func (c *Client) send(ctx context.Context, method string, in, out any, path ...string) error {
	r := request{method: method, path: path, change: true}
	if in != nil {
		body, err := jsonBody(in)
		if err != nil {
			return err
		}
		r.body, r.ctype = body, "application/json"
	}
	return c.call(ctx, r, out)
}
