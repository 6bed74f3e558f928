package busapi_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// runAs runs the test binary as a bus client (TestMain's client mode) under uid and gid.
func runAs(t *testing.T, c *busapitest.Client, uid, gid uint32, call string) (errName string, value []any) {
	t.Helper()
	out := c.Run(t, uid, gid, call)
	var o outcome
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("client %s printed %q: %v", call, out, err)
	}
	if o.Error != "" {
		return o.Error, nil
	}
	json.Unmarshal(o.Value, &value)
	return "", value
}

func TestEnrollmentThroughRegistry(t *testing.T) {
	b := busapitest.StartBus(t)
	suffix := strconv.Itoa(os.Getpid() % 100000)
	alice, bob := busapitest.User(t, "beanne"+suffix), busapitest.User(t, "bebert"+suffix)
	reg := busapitest.StartRegistry(t, alice.Username, bob.Username)
	node := busapitest.StartNode(t, b, reg)

	c := busapitest.NewClient(t, b)
	aUID, aGID := busapitest.IDs(alice)
	bUID, bGID := busapitest.IDs(bob)

	errName, v := runAs(t, c, aUID, aGID, "BeginEnrollmentNamed:phone")
	if errName != "" || len(v) != 3 {
		t.Fatalf("BeginEnrollment as %s = %q, %v; want id, uri, expires", alice.Username, errName, v)
	}
	id, uri := v[0].(string), v[1].(string)
	if exp := int64(v[2].(float64)); exp < time.Now().Unix() || exp > time.Now().Add(11*time.Minute).Unix() {
		t.Errorf("BeginEnrollment expires = %d, want within 10 minutes", exp)
	}
	key, err := totp.ParseURI(uri)
	if err != nil {
		t.Fatalf("BeginEnrollment uri does not parse: %v", err)
	}
	if key.Account != alice.Username {
		t.Errorf("BeginEnrollment uri account = %q, want %q", key.Account, alice.Username)
	}
	code := totp.Code(key.Secret, key.Params, totp.Step(time.Now(), key.Params.Period))

	t.Run("another user cannot finish it", func(t *testing.T) {
		errName, v := runAs(t, c, bUID, bGID, "FinishEnrollment:"+id+":"+code)
		if !strings.HasPrefix(errName, syncbus.ErrNotFound) {
			t.Errorf("FinishEnrollment as %s = %q, %v; want %s", bob.Username, errName, v, syncbus.ErrNotFound)
		}
	})
	t.Run("a wrong code", func(t *testing.T) {
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		errName, v := runAs(t, c, aUID, aGID, "FinishEnrollment:"+id+":"+wrong)
		if errName != "" || len(v) != 3 || v[0] != "wrong_code" {
			t.Errorf("FinishEnrollment(wrong code) = %q, %v; want wrong_code", errName, v)
		}
	})
	t.Run("the owner finishes it", func(t *testing.T) {
		errName, v := runAs(t, c, aUID, aGID, "FinishEnrollment:"+id+":"+code)
		if errName != "" || len(v) != 3 || v[0] != "active" {
			t.Fatalf("FinishEnrollment = %q, %v; want active", errName, v)
		}
		if codes, _ := v[2].([]any); len(codes) == 0 {
			t.Errorf("FinishEnrollment of a first token gave no backup codes: %v", v[2])
		}
	})
	t.Run("the token reaches the node", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			errName, v := runAs(t, c, aUID, aGID, "ListTokens")
			if errName == "" && len(v) == 1 {
				if tok, _ := v[0].(map[string]any); tok["ID"] == id && tok["Active"] == true {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("ListTokens = %q, %v; want %s active", errName, v, id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("a second token needs a proof", func(t *testing.T) {
		errName, _ := runAs(t, c, aUID, aGID, "BeginEnrollmentNamed:laptop")
		if !strings.HasPrefix(errName, syncbus.ErrRefused+": a proof is required") {
			t.Errorf("BeginEnrollment without proof = %q, want %s: a proof is required...", errName, syncbus.ErrRefused)
		}
	})
	if log := node.Log.String(); strings.Contains(log, totp.EncodeSecret(key.Secret)) || strings.Contains(log, "otpauth:") {
		t.Errorf("the node's log holds the secret or the URI:\n%s", log)
	}
}
