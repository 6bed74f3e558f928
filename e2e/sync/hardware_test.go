//go:build linux

package sync

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestHardwareTokenAssigned: a hardware token imported at the registry logs no one in while it
// is unassigned (it never reaches the node); assigned with a verified code from the device it
// reaches the node like any token and logs its user in, and the code used for the assignment
// does not.
func TestHardwareTokenAssigned(t *testing.T) {
	needRoot(t)
	r := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{})
	n := newNode(t, r, nodeOptions{})
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	hw := token.Hardware{HardwareInfo: token.HardwareInfo{Serial: "HW-" + pamtest.RandName(6), Manufacturer: "TokenVendorAcme",
		Algorithm: totp.SHA256, Digits: 8, Period: 30, User: user}, Secret: secret}
	dev := token.Token{Secret: secret, Algorithm: hw.Algorithm, Digits: hw.Digits, Period: hw.Period}
	if _, err := r.admin.ImportHardware(ctx(t), []token.Hardware{hw}, false); err != nil {
		t.Fatalf("ImportHardware: %v", err)
	}
	step := nextStep(t)
	n.waitRev(r.rev(), 10*time.Second)
	if res := n.login(user, code(dev, step)); res.Code == pamtest.Success {
		t.Fatalf("login with an unassigned hardware token = PAM_SUCCESS, want a denial")
	}
	if err := n.tokens().View(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		if len(toks) != 0 {
			t.Errorf("the node holds %d tokens of %s before the assignment", len(toks), user)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	res, err := r.admin.AssignHardware(ctx(t), user, hw.Serial, code(dev, step-5))
	if err != nil || res.Status != registryapi.StatusClockSkew {
		t.Fatalf("AssignHardware(code of 5 steps ago) = %+v, %v; want %s", res, err, registryapi.StatusClockSkew)
	}
	res, err = r.admin.AssignHardware(ctx(t), user, hw.Serial, code(dev, step))
	if err != nil || res.Status != registryapi.StatusActive || res.Token.Serial != hw.Serial {
		t.Fatalf("AssignHardware = %+v, %v; want %s", res, err, registryapi.StatusActive)
	}
	n.waitRev(r.rev(), 10*time.Second)
	if got := n.tokenState(user, res.Token.ID); got != string(token.Active) {
		t.Fatalf("the node's token %s of %s is %q, want active", res.Token.ID, user, got)
	}
	n.login(user, code(dev, step)).Want(t, "the code that assigned the token", pam.ErrAuth, -1)
	n.login(user, code(dev, step+1)).Want(t, "the next code of the assigned hardware token", pamtest.Success, -1)
}
