package verifyd

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/verify"
)

var secret = []byte("12345678901234567890")

// tlog writes log lines to the test's log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// daemon is a resident verifier on a temp socket over a store with alice's token, keeping the
// store's files open as totp-syncd does (store.Resident).
type daemon struct {
	sock, conf, storeDir string
	log                  *lockedBuffer // the daemon's log
	mu                   sync.Mutex
	observed             []string // verdicts Serve passed to observe
}

// lockedBuffer is a log that the test reads while the daemon writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	t  *testing.T
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// options of a test daemon.
type options struct {
	top    string          // top-level config keys
	sync   string          // body of [sync]
	before func(d *daemon) // runs after the socket listens and before Serve accepts
}

func start(t *testing.T) *daemon { return startWith(t, options{}) }

func startWith(t *testing.T, o options) *daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the socket and the store are root's")
	}
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "pam_totp.conf")
	text := o.top + "\n[store]\ndir = \"" + storeDir + "\"\nopen_timeout = \"10s\"\n[rate_limit]\nfree_failures = 10\ninitial_backoff = \"1s\"\nmax_backoff = \"2s\"\nlockout_after = 50\n"
	if o.sync != "" {
		text += "[sync]\n" + o.sync + "\n"
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	err := store.NewTokens(store.Options{Dir: storeDir, Timeout: 5 * time.Second}).Update(func(x *store.TokensTx) error {
		return x.PutToken(token.Token{User: "alice", ID: "t1", Name: "phone", Algorithm: totp.SHA1, Digits: 6,
			Period: 30, Secret: secret, State: token.Active, Created: time.Now().UTC()})
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "verify.sock")
	ln, err := rootsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{sock: sock, conf: conf, storeDir: storeDir, log: &lockedBuffer{t: t}}
	if o.before != nil {
		o.before(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	configs := &config.Cache{}
	observe := func(verdict string, _ time.Duration) {
		d.mu.Lock()
		d.observed = append(d.observed, verdict)
		d.mu.Unlock()
	}
	stores := store.NewResident()
	go func() {
		done <- Serve(ctx, ln, verify.Exchange{Config: configs.Load, Stores: stores,
			Log: func(bool) *slog.Logger { return log }}, log, observe)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		stores.Close()
	})
	return d
}

// helperLogin is one exchange decided the helper's way: verify.Exchange without kept stores, so
// every transaction opens state.db afresh (its own descriptor and flock, as another process).
func (d *daemon) helperLogin(t *testing.T, answer string) protocol.Verdict {
	module, helper := net.Pipe()
	defer module.Close()
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	ex := verify.Exchange{Config: config.Load, Log: func(bool) *slog.Logger { return log }, Transport: "helper"}
	go func() {
		defer helper.Close()
		ex.Serve(helper)
	}()
	req := protocol.Request{Version: protocol.Version, User: "alice", UserKnown: true, Service: "sshd", Config: d.conf}
	q, _ := protocol.AppendFrame(nil, protocol.TypeRequest, req.Encode())
	if _, err := module.Write(q); err != nil {
		t.Error(err)
		return ""
	}
	for {
		typ, p, err := protocol.ReadFrame(module)
		if err != nil {
			return ""
		}
		switch typ {
		case protocol.TypePromptSecret, protocol.TypePromptEcho:
			a, _ := protocol.AppendFrame(nil, protocol.TypeAnswer, []byte(answer))
			module.Write(a)
		case protocol.TypeDone:
			return protocol.Verdict(p)
		}
	}
}

// login is one exchange as pam_totp.so runs it: the request, answer to every prompt, the
// verdict ("" when the connection ended without one).
func (d *daemon) login(t *testing.T, answer string) protocol.Verdict {
	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(d.request("alice")); err != nil {
		t.Error(err)
		return ""
	}
	for {
		typ, p, err := protocol.ReadFrame(conn)
		if err != nil {
			return ""
		}
		switch typ {
		case protocol.TypePromptSecret, protocol.TypePromptEcho:
			a, _ := protocol.AppendFrame(nil, protocol.TypeAnswer, []byte(answer))
			conn.Write(a)
		case protocol.TypeDone:
			if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("data or no end after the verdict: %v", err)
			}
			return protocol.Verdict(p)
		}
	}
}

func now() string { return totp.Code(secret, totp.DefaultParams, totp.Step(time.Now(), 30)) }

// TestLogin: a code is accepted once through the socket; the same code again is refused.
func TestLogin(t *testing.T) {
	t.Parallel()
	d := start(t)
	c := now()
	if v := d.login(t, c); v != protocol.Success {
		t.Fatalf("login with the current code = %q, want success", v)
	}
	if v := d.login(t, c); v != protocol.AuthErr {
		t.Errorf("login with the same code again = %q, want auth_err (replay)", v)
	}
}

// TestConcurrentReplay: 8 logins with the same code at once: exactly one succeeds.
func TestConcurrentReplay(t *testing.T) {
	t.Parallel()
	d := start(t)
	c := now()
	var mu sync.Mutex
	got := map[protocol.Verdict]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := d.login(t, c)
			mu.Lock()
			got[v]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got[protocol.Success] != 1 || got[protocol.AuthErr] != 7 {
		t.Errorf("8 logins with one code at once: %v, want 1 success and 7 auth_err", got)
	}
}

// TestSocketAndHelperAtOnce: logins through the resident verifier (kept store handles) and
// through the helper's per-transaction opens at the same moment on one state.db: one code is
// accepted once in all, and every wrong code is counted.
func TestSocketAndHelperAtOnce(t *testing.T) {
	t.Parallel()
	d := start(t)
	mixed := func(answer string) map[protocol.Verdict]int {
		var mu sync.Mutex
		got := map[protocol.Verdict]int{}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var v protocol.Verdict
				if i%2 == 0 {
					v = d.login(t, answer)
				} else {
					v = d.helperLogin(t, answer)
				}
				mu.Lock()
				got[v]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	if got := mixed("000000x"); got[protocol.AuthErr] != 8 {
		t.Fatalf("8 wrong codes, socket and helper at once: %v, want 8 auth_err", got)
	}
	var fails store.Failures
	err := store.NewState(store.Options{Dir: d.storeDir}).View(func(x *store.StateTx) error {
		fails = x.Failures("alice")
		return nil
	})
	if err != nil || fails.Count != 8 {
		t.Errorf("failures after 8 wrong codes = %d, %v; want 8 (none lost)", fails.Count, err)
	}
	// Below lockout_after (50), but the back-off may have started: clear it the admin's way.
	if err := store.NewState(store.Options{Dir: d.storeDir}).Update(func(x *store.StateTx) error {
		return x.ClearFailures("alice")
	}); err != nil {
		t.Fatal(err)
	}
	if got := mixed(now()); got[protocol.Success] != 1 || got[protocol.AuthErr] != 7 {
		t.Errorf("8 logins with one code, socket and helper at once: %v, want 1 success and 7 auth_err", got)
	}
}

// TestNonRootRefused: a peer that is not root gets no frame at all.
func TestNonRootRefused(t *testing.T) {
	t.Parallel()
	d := start(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	// Let uid 65534 reach the socket for this test only; Listen made it root-only.
	for _, p := range []string{filepath.Dir(filepath.Dir(filepath.Dir(d.sock))), filepath.Dir(filepath.Dir(d.sock)), filepath.Dir(d.sock)} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	// The daemon may close before, while or after the request is written: none of that is an
	// answer.
	script := `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
try:
    s.sendall(bytes.fromhex(sys.argv[2])); n = len(s.recv(100))
except (ConnectionResetError, BrokenPipeError): n = 0
print("got %d bytes" % n)`
	req := protocol.Request{Version: protocol.Version, User: "alice", UserKnown: true, Service: "sshd", Config: d.conf}
	q, _ := protocol.AppendFrame(nil, protocol.TypeRequest, req.Encode())
	out, err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"/usr/bin/python3", "-c", script, d.sock, hex.EncodeToString(q)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "got 0 bytes" {
		t.Errorf("a non-root client: %v: %s; want the connection closed unanswered", err, out)
	}
}

// request is the Q frame of a login of user at sshd from 192.0.2.7 with an SSH key.
func (d *daemon) request(user string) []byte {
	req := protocol.Request{Version: protocol.Version, User: user, UserKnown: true, Service: "sshd", Config: d.conf,
		RHost: "192.0.2.7", SSHAuthInfo: "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyA\n"}
	q, _ := protocol.AppendFrame(nil, protocol.TypeRequest, req.Encode())
	return q
}

// enroller is totp-syncd's root socket for enrollment at login; it counts the enrollments begun.
type enroller struct {
	mu    sync.Mutex
	begun int
}

func (e *enroller) BeginEnrollmentFor(context.Context, string, string) (rootsock.Pending, error) {
	e.mu.Lock()
	e.begun++
	e.mu.Unlock()
	return rootsock.Pending{}, &rootsock.Error{Name: rootsock.ErrUnavailableName, Message: "not in this test"}
}

func (e *enroller) FinishEnrollmentFor(context.Context, string, string, string) (rootsock.Finished, error) {
	return rootsock.Finished{}, &rootsock.Error{Name: rootsock.ErrUnavailableName, Message: "not in this test"}
}

func (e *enroller) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.begun
}

// TestAbandoned: requests whose module hung up before the daemon read them (it gave up after
// connect_ms, the daemon being stopped or slow, and asked the helper) are read late and decide
// nothing: no enrollment begun for a user in grace, nothing in state.db, no verdict observed, and
// the daemon logs them as abandoned, not as answered. A login after them is answered as usual.
func TestAbandoned(t *testing.T) {
	t.Parallel()
	en := &enroller{}
	enrollSock := serveEnroller(t, en)

	const abandoned = 3
	var full, cut []byte
	d := startWith(t, options{
		top:  "mode = \"grace\"\ngrace_until = 2099-01-01T00:00:00Z\nenroll_at_login = true\nssh_grace = \"1h\"",
		sync: fmt.Sprintf("socket = %q", enrollSock),
		before: func(d *daemon) {
			// Each connects, sends its request (or part of it) and hangs up before the daemon
			// accepts: bob has no token (enrollment at login would begin), alice has one.
			full, cut = d.request("alice"), d.request("bob")
			for _, q := range [][]byte{d.request("bob"), full, cut[:len(cut)-3]} {
				conn, err := net.Dial("unix", d.sock)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(q); err != nil {
					t.Fatal(err)
				}
				conn.Close()
			}
		},
	})
	before := dump(t, d.conf)
	// Wait until the daemon has handled the three connections, one way or the other.
	count := func(s string) int { return strings.Count(d.log.String(), s) }
	for deadline := time.Now().Add(10 * time.Second); count("login abandoned")+count("login answered") < abandoned; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon handled %d of the %d abandoned connections", count("login abandoned")+count("login answered"), abandoned)
		}
	}
	if n := count("login abandoned"); n != abandoned {
		t.Errorf("the daemon logged %d abandoned logins, want %d", n, abandoned)
	}
	if n := en.count(); n != 0 {
		t.Errorf("abandoned requests began %d enrollments, want none", n)
	}
	if after := dump(t, d.conf); after != before {
		t.Errorf("abandoned requests changed state.db:\nbefore %s\nafter  %s", before, after)
	}
	if strings.Contains(d.log.String(), "login answered") {
		t.Errorf("an abandoned request was logged as answered:\n%s", d.log.String())
	}
	if v := d.login(t, now()); v != protocol.Success {
		t.Errorf("login after the abandoned ones = %q, want success", v)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.observed) != 1 || d.observed[0] != string(protocol.Success) {
		t.Errorf("observed verdicts %q, want only the live login's success", d.observed)
	}
}

// TestAbandonedWhileDeciding: the module hangs up while the daemon waits for tokens.db (a writer
// holds its lock longer than the module's connect_ms), so the helper decides that login and
// offers its own enrollment. When the lock is released the daemon must not begin one too, for a
// user in grace with enroll_at_login: a pending token with a secret nobody is shown.
func TestAbandonedWhileDeciding(t *testing.T) {
	t.Parallel()
	en := &enroller{}
	enrollSock := serveEnroller(t, en)
	d := startWith(t, options{
		top:  "mode = \"grace\"\ngrace_until = 2099-01-01T00:00:00Z\nenroll_at_login = true",
		sync: fmt.Sprintf("socket = %q", enrollSock),
	})
	cfg, _, err := config.Load(d.conf)
	if err != nil {
		t.Fatal(err)
	}
	// A writer (totp-syncd applying a batch) holds tokens.db.
	db, err := bolt.Open(filepath.Join(cfg.Store.Dir, store.TokensFile), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(d.request("bob")); err != nil {
		t.Fatal(err)
	}
	// The daemon logs the request once it is deciding, that is, waiting for the lock.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.log.String(), "msg=request user=bob"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not start deciding bob's login")
		}
	}
	conn.Close() // connect_ms elapsed: the module asks the helper
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.log.String(), "user=bob verdict="); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not finish bob's login")
		}
	}
	if n := en.count(); n != 0 {
		t.Errorf("the daemon began %d enrollments for a module that had gone, want none", n)
	}
}

// serveEnroller serves e on a root socket like totp-syncd's until the test ends and returns its path.
func serveEnroller(t *testing.T, e *enroller) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "enroll", "totp-syncd.sock")
	ln, err := rootsock.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = rootsock.Serve(ctx, ln, e, 5*time.Second, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-served })
	return path
}

// dump is every bucket and key of the daemon's state.db ("" when it does not exist yet).
func dump(t *testing.T, conf string) string {
	t.Helper()
	cfg, _, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Store.Dir, store.StateFile)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return ""
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return dumpBucket(&b, string(name), bk)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func dumpBucket(b *strings.Builder, path string, bk *bolt.Bucket) error {
	return bk.ForEach(func(k, v []byte) error {
		if v == nil {
			return dumpBucket(b, path+"/"+string(k), bk.Bucket(k))
		}
		fmt.Fprintf(b, "%s/%x=%x ", path, k, v)
		return nil
	})
}
