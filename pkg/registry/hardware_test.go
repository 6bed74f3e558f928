package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestHardwareTokens: imported hardware tokens are sealed, reach no node until assigned, need a
// verified code to be assigned, and are re-sealed by a key rotation.
func TestHardwareTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	cred := e.addNode("n1", "alpha")
	secret := bytes.Repeat([]byte("0123456789"), 2)
	hw := token.Hardware{HardwareInfo: token.HardwareInfo{Serial: "SN1", Model: "Acme 6", Algorithm: totp.SHA1, Digits: 6, Period: 30},
		Secret: secret}
	hw2 := token.Hardware{HardwareInfo: token.HardwareInfo{Serial: "SN2", Algorithm: totp.SHA1, Digits: 6, Period: 30},
		Secret: bytes.Repeat([]byte("x"), 20)}
	imp := registryapi.HardwareImport{Tokens: []token.Hardware{hw, hw2}}

	var rep registryapi.HardwareReport
	bad := imp
	bad.Tokens = append([]token.Hardware{}, imp.Tokens...)
	bad.Tokens[1].Digits = 9
	e.mustAdmin(400, "POST", "/v1/admin/import/hardware", bad, &rep)
	if len(rep.Invalid) != 1 || rep.Invalid[0].Line != 2 || !strings.Contains(rep.Error, "nothing was imported") {
		t.Fatalf("import with a bad token = %+v", rep)
	}
	e.mustAdmin(200, "POST", "/v1/admin/import/hardware", imp, &rep)
	if len(rep.Imported) != 2 || len(rep.Already) != 0 {
		t.Fatalf("import = %+v", rep)
	}
	e.mustAdmin(200, "POST", "/v1/admin/import/hardware", imp, &rep)
	if len(rep.Imported) != 0 || len(rep.Already) != 2 {
		t.Fatalf("second import = %+v", rep)
	}
	var list []token.HardwareInfo
	e.mustAdmin(200, "GET", "/v1/admin/hardware", nil, &list)
	if len(list) != 2 || list[0].Serial != "SN1" || list[0].Model != "Acme 6" {
		t.Fatalf("list = %+v", list)
	}
	// Sealed in the store: the seed is in no value in the clear.
	err := e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		return tx.Range(prefixHardware, func(kvp kv.KeyValue) error {
			if bytes.Contains(kvp.Value, secret) || strings.Contains(string(kvp.Value), "MDEyMzQ1Njc4OTAxMjM0NTY3ODk") {
				t.Errorf("%s holds the seed", kvp.Key)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, recs, _ := e.snapshot(cred); len(recs) != 0 {
		t.Fatalf("the node receives %d records before an assignment, want 0", len(recs))
	}

	now := time.Now()
	dev := token.Token{Secret: secret, Algorithm: totp.SHA1, Digits: 6, Period: 30}
	cur := totp.Step(now, 30)
	var got registryapi.HardwareAssigned
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/hardware", registryapi.HardwareAssign{Serial: "SN1", Code: "000000x"}, &got)
	if got.Status != registryapi.StatusWrongCode {
		t.Fatalf("assign with a non-code = %+v", got)
	}
	e.mustAdmin(404, "POST", "/v1/admin/users/ann/hardware", registryapi.HardwareAssign{Serial: "SN9", Code: totp.Code(secret, dev.Params(), cur)}, nil)
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/hardware", registryapi.HardwareAssign{Serial: "SN1", Code: totp.Code(secret, dev.Params(), cur)}, &got)
	if got.Status != registryapi.StatusActive || got.Token.Serial != "SN1" || got.Token.State != token.Active {
		t.Fatalf("assign = %+v", got)
	}
	_, recs, _ := e.snapshot(cred)
	var synced token.Token
	for k, v := range recs {
		if strings.HasPrefix(k, "t/ann/") {
			if err := json.Unmarshal(v, &synced); err != nil {
				t.Fatal(err)
			}
		}
	}
	if synced.Serial != "SN1" || synced.UsedStep < cur || !bytes.Equal(synced.Secret, secret) {
		t.Fatalf("the node receives %+v, want SN1 with the assigning step used", synced)
	}
	e.mustAdmin(409, "POST", "/v1/admin/users/ann/hardware", registryapi.HardwareAssign{Serial: "SN1", Code: "123456"}, nil)
	// An import of SN1 with another seed is refused although SN1 is assigned now.
	other := imp
	other.Tokens = []token.Hardware{hw}
	other.Tokens[0].Secret = bytes.Repeat([]byte("y"), 20)
	e.mustAdmin(400, "POST", "/v1/admin/import/hardware", other, &rep)

	// Unassigned again: gone from the node, back in the list.
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/tokens/"+got.Token.ID+"/unassign", nil, nil)
	if _, recs, _ := e.snapshot(cred); len(recs) != 1 { // the enrolled mark of ann
		t.Fatalf("the node receives %v after the unassignment", recs)
	}
	e.mustAdmin(200, "GET", "/v1/admin/hardware", nil, &list)
	if len(list) != 2 {
		t.Fatalf("list after unassign = %+v", list)
	}
	// A rotation re-seals the unassigned tokens under the new key.
	line, _ := seal.GenerateKey(rand.Reader, "k2")
	if _, err := Reseal(context.Background(), e.store, combine(t, e, line), "root", time.Now); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/k2"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	onlyNew, err := seal.LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	err = e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		kvp, err := tx.Get(prefixHardware + "SN2")
		if err != nil {
			return err
		}
		var rec hardwareRecord
		if err := json.Unmarshal(kvp.Value, &rec); err != nil {
			return err
		}
		_, err = onlyNew.Open(rec.Sealed, []byte(kvp.Key))
		return err
	})
	if err != nil {
		t.Fatalf("SN2 after the rotation: %v", err)
	}

}
