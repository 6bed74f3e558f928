package busapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// The test binary doubles as a bus client run under another uid (clientEnv set): it makes one
// call and prints the outcome as JSON (see busapitest.Client).
func TestMain(m *testing.M) {
	if call := os.Getenv(busapitest.ClientEnv); call != "" {
		json.NewEncoder(os.Stdout).Encode(clientCall(os.Getenv(busapitest.ClientBusEnv), call))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// outcome is what a client call printed: the D-Bus error name or the value.
type outcome struct {
	Error string          `json:"error,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

func clientCall(addr, call string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return outcome{Error: "connect: " + err.Error()}
	}
	defer conn.Close()
	obj := conn.Object(syncbus.Name, syncbus.Path)
	method, arg, _ := strings.Cut(call, ":")
	var c *dbus.Call
	switch method {
	case "OwnName":
		c = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.RequestName", 0, syncbus.Name, uint32(dbus.NameFlagDoNotQueue))
	case "GetAll":
		c = obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, syncbus.Interface)
	case "Introspect":
		c = obj.CallWithContext(ctx, "org.freedesktop.DBus.Introspectable.Introspect", 0)
	case "Ping":
		c = obj.CallWithContext(ctx, "org.freedesktop.DBus.Peer.Ping", 0)
	case "ListTokensOf": // claims another user: there is no such argument
		c = obj.CallWithContext(ctx, syncbus.Interface+".ListTokens", 0, arg)
	case "BeginEnrollment":
		c = obj.CallWithContext(ctx, syncbus.Interface+".BeginEnrollment", 0, "phone", "")
	case "BeginEnrollmentNamed": // arg: name
		c = obj.CallWithContext(ctx, syncbus.Interface+".BeginEnrollment", 0, arg, "")
	case "FinishEnrollment": // arg: id:code
		id, code, _ := strings.Cut(arg, ":")
		c = obj.CallWithContext(ctx, syncbus.Interface+".FinishEnrollment", 0, id, code)
	default:
		c = obj.CallWithContext(ctx, syncbus.Interface+"."+method, 0)
	}
	if c.Err != nil {
		var de dbus.Error
		if errors.As(c.Err, &de) {
			msg := de.Name
			if len(de.Body) > 0 {
				msg += ": " + fmt.Sprint(de.Body[0])
			}
			return outcome{Error: msg}
		}
		return outcome{Error: c.Err.Error()}
	}
	var v any
	switch method {
	case "Status":
		var m map[string]dbus.Variant
		err = c.Store(&m)
		plain := map[string]any{}
		for k, x := range m {
			plain[k] = x.Value()
		}
		v = plain
	case "ListTokens":
		var toks []syncbus.TokenInfo
		err = c.Store(&toks)
		v = toks
	default:
		v = c.Body
	}
	if err != nil {
		return outcome{Error: "store: " + err.Error()}
	}
	b, _ := json.Marshal(v)
	return outcome{Value: b}
}

// client runs the test binary as uid/gid and makes one call.
type client struct{ *busapitest.Client }

func newClient(t *testing.T, b *busapitest.Bus) *client {
	t.Helper()
	return &client{busapitest.NewClient(t, b)}
}

func (c *client) call(t *testing.T, uid, gid uint32, call string) outcome {
	t.Helper()
	out := c.Run(t, uid, gid, call)
	var o outcome
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("client %s as uid %d printed %q: %v", call, uid, out, err)
	}
	return o
}

func plant(t *testing.T, dir string, toks ...token.Token) {
	t.Helper()
	db := store.NewTokens(store.Options{Dir: dir})
	err := db.Update(func(x *store.TokensTx) error {
		for _, tok := range toks {
			if err := x.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func storeToken(user, id, name string, state token.State, created time.Time) token.Token {
	return token.Token{User: user, ID: id, Name: name, Algorithm: "SHA1", Digits: 6, Period: 30,
		Secret: bytes.Repeat([]byte{7}, 20), State: state, Created: created}
}

func TestService(t *testing.T) {
	b := busapitest.StartBus(t)
	suffix := strconv.Itoa(os.Getpid() % 100000)
	alice, bob := busapitest.User(t, "btalice"+suffix), busapitest.User(t, "btbob"+suffix)
	storeDir := t.TempDir()
	os.Chmod(storeDir, 0o700)
	created := time.Unix(1700000000, 0)
	plant(t, storeDir,
		storeToken(alice.Username, "a1", "phone", token.Active, created),
		storeToken(alice.Username, "a2", "new phone", token.Pending, created.Add(time.Hour)),
		storeToken(bob.Username, "b1", "yubikey", token.Active, created),
		storeToken(bob.Username, "b2", "old", token.Disabled, created))

	cfg := config.Default()
	cfg.Store.Dir = storeDir
	cfg.Sync.Registry = config.URLs{"https://registry.example:8443"}
	var kicks atomic.Int32
	svc, err := busapi.Open(context.Background(), b.Addr, busapi.Options{
		Config:   &cfg,
		Metrics:  nodesync.NewMetrics(time.Now, "test"),
		Kick:     func() bool { kicks.Add(1); return true },
		SyncWait: 100 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { svc.Close() })

	if _, err := busapi.Open(context.Background(), b.Addr, busapi.Options{Config: &cfg}); !errors.Is(err, busapi.ErrNameTaken) {
		t.Errorf("second Open = %v, want %v", err, busapi.ErrNameTaken)
	}

	c := newClient(t, b)
	aUID, aGID := busapitest.IDs(alice)
	bUID, bGID := busapitest.IDs(bob)
	const noUser = 3999999 // no passwd entry
	tokensJSON := func(toks ...syncbus.TokenInfo) string { j, _ := json.Marshal(toks); return string(j) }
	tests := []struct {
		name      string
		uid, gid  uint32
		call      string
		want      string // JSON of the value, or a prefix of the error
		wantError bool
	}{
		{name: "alice lists her tokens", uid: aUID, gid: aGID, call: "ListTokens",
			want: tokensJSON(syncbus.TokenInfo{ID: "a1", Name: "phone", State: "active", Created: created.Unix(), Active: true},
				syncbus.TokenInfo{ID: "a2", Name: "new phone", State: "pending", Created: created.Add(time.Hour).Unix(), Active: false})},
		{name: "bob lists his tokens", uid: bUID, gid: bGID, call: "ListTokens",
			want: tokensJSON(syncbus.TokenInfo{ID: "b1", Name: "yubikey", State: "active", Created: created.Unix(), Active: true},
				syncbus.TokenInfo{ID: "b2", Name: "old", State: "disabled", Created: created.Unix(), Active: false})},
		{name: "root has no tokens", uid: 0, gid: 0, call: "ListTokens", want: "[]"},
		{name: "alice cannot name bob", uid: aUID, gid: aGID, call: "ListTokensOf:" + bob.Username,
			wantError: true, want: "org.freedesktop.DBus.Error.InvalidArgs"},
		// The bus itself refuses a uid without a passwd entry; Error.Refused is for a uid that
		// the daemon's NSS knows and /etc/passwd (os/user without cgo) does not.
		{name: "unknown uid refused by the bus", uid: noUser, gid: noUser, call: "ListTokens",
			wantError: true, want: "connect: "},
		{name: "alice status", uid: aUID, gid: aGID, call: "Status",
			want: `{"applied_revision":0,"connected":false,"last_contact":0,"registry":"https://registry.example:8443","staleness_s":-1,"tokens_active_here":1}`},
		{name: "sync now", uid: bUID, gid: bGID, call: "SyncNow", want: "[0]"},
		{name: "enrollment not yet", uid: aUID, gid: aGID, call: "BeginEnrollment",
			wantError: true, want: syncbus.ErrUnavailable + ": enrollment is not available on this node"},
		{name: "introspect", uid: aUID, gid: aGID, call: "Introspect", want: "FinishEnrollment"},
		{name: "ping", uid: aUID, gid: aGID, call: "Ping", want: "null"},
		{name: "policy: a user cannot own the name", uid: aUID, gid: aGID, call: "OwnName",
			wantError: true, want: "org.freedesktop.DBus.Error.AccessDenied"},
		{name: "policy: nothing beyond the interface", uid: aUID, gid: aGID, call: "GetAll",
			wantError: true, want: "org.freedesktop.DBus.Error.AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := c.call(t, tt.uid, tt.gid, tt.call)
			switch {
			case tt.wantError && !strings.HasPrefix(o.Error, tt.want):
				t.Errorf("%s as uid %d = error %q, value %s; want error %q", tt.call, tt.uid, o.Error, o.Value, tt.want)
			case !tt.wantError && o.Error != "":
				t.Errorf("%s as uid %d = error %q; want %s", tt.call, tt.uid, o.Error, tt.want)
			case !tt.wantError && tt.call == "Introspect" && !strings.Contains(string(o.Value), tt.want):
				t.Errorf("%s as uid %d = %s; want it to contain %q", tt.call, tt.uid, o.Value, tt.want)
			case !tt.wantError && tt.call != "Introspect" && !jsonEqual(o.Value, tt.want):
				t.Errorf("%s as uid %d = %s; want %s", tt.call, tt.uid, o.Value, tt.want)
			}
		})
	}
	t.Cleanup(func() {
		if kicks.Load() != 1 {
			t.Errorf("SyncNow kicked the syncer %d times, want 1", kicks.Load())
		}
	})
}

func jsonEqual(got json.RawMessage, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}
