package verifyd

import (
	"context"
	"encoding/hex"
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
}

func start(t *testing.T) *daemon {
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
	text := "[store]\ndir = \"" + storeDir + "\"\n[rate_limit]\nfree_failures = 10\ninitial_backoff = \"1s\"\nmax_backoff = \"2s\"\nlockout_after = 50\n"
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	configs := &config.Cache{}
	stores := store.NewResident()
	go func() {
		done <- Serve(ctx, ln, verify.Exchange{Config: configs.Load, Stores: stores,
			Log: func(bool) *slog.Logger { return log }}, log, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		stores.Close()
	})
	return &daemon{sock: sock, conf: conf, storeDir: storeDir}
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
	req := protocol.Request{Version: protocol.Version, User: "alice", UserKnown: true, Service: "sshd", Config: d.conf}
	q, _ := protocol.AppendFrame(nil, protocol.TypeRequest, req.Encode())
	if _, err := conn.Write(q); err != nil {
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
