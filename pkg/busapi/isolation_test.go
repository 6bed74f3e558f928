package busapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// A user cannot reach another user's tokens whatever a client sends: the service takes the
// user from the bus (GetConnectionUnixUser), never from a message. These tests make raw calls
// with any method and arguments, as a hostile client would, rather than the CLI's calls.

// rawCallEnv holds the call that TestRawClient makes: JSON of rawCall.
const rawCallEnv = "BUSAPI_TEST_RAW_CALL"

// rawOutcomeTag starts the line on which TestRawClient prints its rawOutcome.
const rawOutcomeTag = "RAW-OUTCOME "

// rawCall is any method of the interface with string arguments.
type rawCall struct {
	Bus    string   `json:"bus"`
	Method string   `json:"method"`
	Args   []string `json:"args"`
}

// rawOutcome is the D-Bus error name and message, or the reply's body.
type rawOutcome struct {
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
	Body    []any  `json:"body,omitempty"`
}

// TestRawClient is the client side of rawClient.run, in a copy of the test binary run as
// another user; without rawCallEnv it does nothing.
func TestRawClient(t *testing.T) {
	spec := os.Getenv(rawCallEnv)
	if spec == "" {
		return
	}
	var c rawCall
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	out := doRawCall(c)
	b, _ := json.Marshal(out)
	fmt.Printf("%s%s\n", rawOutcomeTag, b)
}

func doRawCall(c rawCall) rawOutcome {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dbus.Connect(c.Bus, dbus.WithContext(ctx))
	if err != nil {
		return rawOutcome{Error: "connect", Message: err.Error()}
	}
	defer conn.Close()
	args := make([]any, len(c.Args))
	for i, a := range c.Args {
		args[i] = a
	}
	call := conn.Object(syncbus.Name, syncbus.Path).CallWithContext(ctx, syncbus.Interface+"."+c.Method, 0, args...)
	if call.Err != nil {
		var de dbus.Error
		if errors.As(call.Err, &de) {
			msg := ""
			if len(de.Body) > 0 {
				msg = fmt.Sprint(de.Body[0])
			}
			return rawOutcome{Error: de.Name, Message: msg}
		}
		return rawOutcome{Error: "call", Message: call.Err.Error()}
	}
	body := make([]any, len(call.Body))
	for i, v := range call.Body {
		if m, ok := v.(map[string]dbus.Variant); ok {
			plain := map[string]any{}
			for k, x := range m {
				plain[k] = x.Value()
			}
			v = plain
		}
		body[i] = v
	}
	return rawOutcome{Body: body}
}

// rawClient runs a copy of the test binary, reachable by the test users, as TestRawClient.
type rawClient struct {
	bin, addr string
}

func newRawClient(t *testing.T, b *busapitest.Bus) *rawClient {
	t.Helper()
	return &rawClient{bin: busapitest.CopySelf(t, b, "raw-client"), addr: b.Addr}
}

// run makes one call as uid/gid.
func (c *rawClient) run(t *testing.T, uid, gid uint32, method string, args ...string) rawOutcome {
	t.Helper()
	spec, _ := json.Marshal(rawCall{Bus: c.addr, Method: method, Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "-test.run=^TestRawClient$")
	// No race detector pause at exit (atexit_sleep_ms, 1 s by default) in every call.
	cmd.Env = []string{rawCallEnv + "=" + string(spec), "PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("raw client %s as uid %d: %v\n%s%s", method, uid, err, out, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), rawOutcomeTag); ok {
			var o rawOutcome
			if err := json.Unmarshal([]byte(line), &o); err != nil {
				t.Fatalf("raw client %s printed %q: %v", method, line, err)
			}
			return o
		}
	}
	t.Fatalf("raw client %s as uid %d printed no outcome:\n%s%s", method, uid, out, stderr.String())
	return rawOutcome{}
}

func TestUserIsolation(t *testing.T) {
	b := busapitest.StartBus(t)
	suffix := strconv.Itoa(os.Getpid() % 100000)
	alice, bob := busapitest.User(t, "bialice"+suffix), busapitest.User(t, "bibob"+suffix)
	reg := busapitest.StartRegistry(t, alice.Username, bob.Username)
	busapitest.StartNode(t, b, reg)
	c := newRawClient(t, b)
	aUID, aGID := busapitest.IDs(alice)
	bUID, bGID := busapitest.IDs(bob)

	// Alice enrolls a token and waits until the node has it.
	o := c.run(t, aUID, aGID, "BeginEnrollment", "phone", "")
	if o.Error != "" || len(o.Body) != 3 {
		t.Fatalf("BeginEnrollment as alice = %+v, want id, uri, expires", o)
	}
	id, _ := o.Body[0].(string)
	uri, _ := o.Body[1].(string)
	key, err := totp.ParseURI(uri)
	if err != nil {
		t.Fatalf("BeginEnrollment uri does not parse: %v", err)
	}
	code := func() string { return totp.Code(key.Secret, key.Params, totp.Step(time.Now(), key.Params.Period)) }
	if o := c.run(t, aUID, aGID, "FinishEnrollment", id, code()); o.Error != "" || len(o.Body) != 3 || o.Body[0] != "active" {
		t.Fatalf("FinishEnrollment as alice = %+v, want active", o)
	}
	aliceTokens := func() []any {
		t.Helper()
		o := c.run(t, aUID, aGID, "ListTokens")
		if o.Error != "" || len(o.Body) != 1 {
			t.Fatalf("ListTokens as alice = %+v", o)
		}
		l, _ := o.Body[0].([]any)
		return l
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(aliceTokens()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("alice's token %s did not reach the node", id)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// anyError accepts any D-Bus error: a method that does not exist, that the bus policy
	// denies, or that the service refuses.
	const anyError = "*"
	tests := []struct {
		name      string
		method    string
		args      []string
		wantError string // a D-Bus error name, anyError, or "" for a reply
		check     func(t *testing.T, o rawOutcome)
	}{
		{name: "bob lists no tokens", method: "ListTokens", check: func(t *testing.T, o rawOutcome) {
			if l, _ := o.Body[0].([]any); len(l) != 0 {
				t.Errorf("ListTokens as bob = %v, want none", o.Body)
			}
		}},
		{name: "bob's status counts none of alice's", method: "Status", check: func(t *testing.T, o rawOutcome) {
			if m, _ := o.Body[0].(map[string]any); m["tokens_active_here"] != float64(0) {
				t.Errorf("Status as bob = %v, want tokens_active_here 0", o.Body)
			}
		}},
		{name: "ListTokens naming alice", method: "ListTokens", args: []string{alice.Username}, wantError: "org.freedesktop.DBus.Error.InvalidArgs"},
		{name: "Status naming alice", method: "Status", args: []string{alice.Username}, wantError: "org.freedesktop.DBus.Error.InvalidArgs"},
		{name: "RemoveToken naming alice", method: "RemoveToken", args: []string{id, code(), alice.Username}, wantError: "org.freedesktop.DBus.Error.InvalidArgs"},
		{name: "rename alice's token", method: "RenameToken", args: []string{id, "mine now"}, wantError: syncbus.ErrNotFound},
		{name: "rename by a path to alice's token", method: "RenameToken", args: []string{"../" + alice.Username + "/" + id, "mine now"}, wantError: syncbus.ErrInvalid},
		{name: "remove alice's token with her code", method: "RemoveToken", args: []string{id, code()}, wantError: syncbus.ErrNotFound},
		{name: "finish alice's token", method: "FinishEnrollment", args: []string{id, code()}, wantError: syncbus.ErrNotFound},
		{name: "backup codes with alice's code", method: "RegenerateBackupCodes", args: []string{code()}, wantError: syncbus.ErrRefused},
		{name: "begin for alice", method: "BeginEnrollmentFor", args: []string{alice.Username, "mine"}, wantError: anyError},
		{name: "finish for alice", method: "FinishEnrollmentFor", args: []string{alice.Username, id, code()}, wantError: anyError},
		{name: "begin with alice's code is bob's own", method: "BeginEnrollment", args: []string{"x", code()}, check: func(t *testing.T, o rawOutcome) {
			uri, _ := o.Body[1].(string)
			if k, err := totp.ParseURI(uri); err != nil || k.Account != bob.Username {
				t.Errorf("BeginEnrollment as bob: account %q (%v), want %q", k.Account, err, bob.Username)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := c.run(t, bUID, bGID, tt.method, tt.args...)
			switch {
			case tt.wantError == "" && o.Error != "":
				t.Fatalf("%s%q as bob = error %s %q, want a reply", tt.method, tt.args, o.Error, o.Message)
			case tt.wantError == anyError && o.Error == "":
				t.Fatalf("%s%q as bob = %v, want an error", tt.method, tt.args, o.Body)
			case tt.wantError != "" && tt.wantError != anyError && o.Error != tt.wantError:
				t.Fatalf("%s%q as bob = error %q %q, body %v; want error %s", tt.method, tt.args, o.Error, o.Message, o.Body, tt.wantError)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}

	// Alice's token is as it was, on the node and in the registry.
	l := aliceTokens()
	if tok, _ := l[0].([]any); len(l) != 1 || len(tok) != 5 || tok[0] != id || tok[1] != "phone" || tok[4] != true {
		t.Errorf("alice's tokens after bob's calls = %v, want %s \"phone\" active", l, id)
	}
	var toks []token.Info
	reg.Admin(200, "GET", "/v1/admin/users/"+alice.Username+"/tokens", nil, &toks)
	if len(toks) != 1 || toks[0].ID != id || toks[0].Name != "phone" || toks[0].State != "active" {
		t.Errorf("registry tokens of alice = %+v, want %s \"phone\" active", toks, id)
	}
}
