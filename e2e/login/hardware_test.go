//go:build linux

package login

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
)

// TestHardwareTokenLogin: on a node without a registry, a hardware token imported from RFC 6030
// Figure 6's encrypted PSKC file (as TOTP) logs no one in while it is unassigned, nor while its
// assignment waits for a code; assigned with a verified code it logs its user in, and the code
// that activated it does not.
func TestHardwareTokenLogin(t *testing.T) {
	needRoot(t)
	user := pamtest.AddUser(t, userPrefix)
	f := newFixture(t, user, conf{})
	data, err := os.ReadFile(filepath.Join("..", "..", "pkg", "tokenimport", "testdata", "totp-figure6.pskcxml"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tokenimport.ParsePSKCKey([]byte("12345678901234567890123456789012"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := tokenimport.ParsePSKC(data, tokenimport.PSKCOptions{Key: key, Now: f.clock.Now()})
	if err != nil || len(file.Tokens) != 1 {
		t.Fatalf("ParsePSKC = %+v, %v", file, err)
	}
	cfg, _, err := config.Load(f.conf)
	if err != nil {
		t.Fatal(err)
	}
	a := admin.New(cfg)
	a.Now = f.clock.Now
	if _, err := a.ImportPSKC(file, admin.PSKCOptions{}); err != nil {
		t.Fatalf("ImportPSKC: %v", err)
	}
	dev := token.Token{Secret: []byte("12345678901234567890"), Algorithm: "SHA1", Digits: 8, Period: 30}
	step := f.clock.NextStep(t, 30)
	f.auth(code(dev, step)).Want(t, "an unassigned hardware token", pam.ErrAuth, -1)

	en, err := a.AssignHardware("987654321", user)
	if err != nil {
		t.Fatalf("AssignHardware: %v", err)
	}
	f.auth(code(dev, step)).Want(t, "an assigned hardware token before its first code", pam.ErrAuth, -1)
	check, err := a.Confirm(user, en.Token.ID, code(dev, step))
	if err != nil || check.Outcome != admin.Verified {
		t.Fatalf("Confirm = %+v, %v; want Verified", check, err)
	}
	f.auth(code(dev, step)).Want(t, "the code that activated the hardware token", pam.ErrAuth, -1)
	f.auth(code(dev, step+1)).Want(t, "the next code of the hardware token", pamtest.Success, 1)
}
