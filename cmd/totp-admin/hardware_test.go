package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// pskcFile is one of the PSKC test files of package tokenimport (RFC 6030's figures and TOTP
// variants of them).
func pskcFile(name string) string {
	return filepath.Join("..", "..", "pkg", "tokenimport", "testdata", name)
}

// figure6Key writes RFC 6030 Figure 6's pre-shared key to a key file of mode.
func figure6Key(t *testing.T, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "vendor.key")
	if err := os.WriteFile(f, []byte("12345678901234567890123456789012\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, mode); err != nil {
		t.Fatal(err)
	}
	return f
}

// figure6Code is the code of RFC 6030 Figure 6's secret ("12345678901234567890", 8 digits) at
// steps time steps from now.
func figure6Code(steps int) string {
	p := totp.Params{Algorithm: totp.SHA1, Digits: 8, Period: 30}
	return totp.Code([]byte("12345678901234567890"), p, uint64(int64(totp.Step(time.Now(), 30))+int64(steps)))
}

func (s *site) hardware(t *testing.T) []token.Hardware {
	t.Helper()
	var hs []token.Hardware
	err := store.NewTokens(s.opts()).View(func(x *store.TokensTx) error {
		return x.ForEachHardware(func(h token.Hardware) error {
			hs = append(hs, h)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("read hardware tokens: %v", err)
	}
	return hs
}

func TestImportPSKC(t *testing.T) {
	t.Run("encrypted", func(t *testing.T) {
		s := newSite(t)
		key := figure6Key(t, 0o600)
		r := s.run(t, "", "import", "pskc", "--dry-run", "--key-file", key, pskcFile("totp-figure6.pskcxml"))
		if r.code != 0 || !strings.Contains(r.stdout, "Dry run, nothing written: would import 1 hardware tokens, unassigned: 987654321.") {
			t.Fatal(r)
		}
		if _, err := os.Stat(filepath.Join(s.store, store.TokensFile)); !os.IsNotExist(err) {
			t.Fatalf("a dry run wrote tokens.db: %v", err)
		}
		r = s.run(t, "", "import", "pskc", "--key-file", key, pskcFile("totp-figure6.pskcxml"))
		golden(t, r)
		if r.code != 0 {
			t.Fatal(r)
		}
		hs := s.hardware(t)
		if len(hs) != 1 || hs[0].Serial != "987654321" || string(hs[0].Secret) != "12345678901234567890" || hs[0].Digits != 8 {
			t.Fatalf("hardware tokens = %+v", hs)
		}
		r = s.run(t, "", "import", "pskc", "--key-file", key, pskcFile("totp-figure6.pskcxml"))
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 0 hardware tokens, unassigned.\n1 already imported with the same seed, skipped: 987654321.") {
			t.Fatal(r)
		}
		r = s.run(t, "", "token", "list", "--unassigned")
		if r.code != 0 || !strings.Contains(r.stdout, "987654321  Manufacturer  -      SHA1       8       30") {
			t.Fatal(r)
		}
		r = s.run(t, "", "token", "list", "--unassigned", "--json")
		var list []token.HardwareInfo
		if err := json.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil || len(list) != 1 || list[0].Serial != "987654321" {
			t.Fatalf("token list --unassigned --json: %v\n%s", err, r)
		}
		if r := s.run(t, "", "token", "list"); r.code != 0 || !strings.Contains(r.stdout, "No tokens.") {
			t.Fatalf("an unassigned token is listed as a user's\n%s", r)
		}
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.Contains(out, "12345678901234567890") || strings.Contains(out, "GEZDGNBVGY3TQOJQ") {
				t.Fatalf("output holds the secret\n%s", r)
			}
		}
	})
	t.Run("key refused", func(t *testing.T) {
		s := newSite(t)
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"no key", nil, "give it with --key-file FILE"},
			{"key file readable by others", []string{"--key-file", figure6Key(t, 0o644)}, "--key-file:"},
			{"wrong key", []string{"--key-file", secretFile(t, "00112233445566778899aabbccddeeff")}, "wrong key"},
		} {
			r := s.run(t, "", append([]string{"import", "pskc", pskcFile("totp-figure6.pskcxml")}, tc.args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "1234567890123456") {
				t.Errorf("%s: want an error with %q\n%s", tc.name, tc.want, r)
			}
		}
		if _, err := os.Stat(filepath.Join(s.store, store.TokensFile)); !os.IsNotExist(err) {
			t.Fatalf("tokens.db written: %v", err)
		}
	})
	t.Run("invalid packages", func(t *testing.T) {
		s := newSite(t)
		// Figure 10 has four HOTP keys: all refused, nothing written; so is a file with one
		// good and one bad package.
		r := s.run(t, "", "import", "pskc", pskcFile("rfc6030-figure10.pskcxml"))
		golden(t, r)
		if r.code != 1 {
			t.Fatal(r)
		}
		plain, err := os.ReadFile(pskcFile("totp-plain.pskcxml"))
		if err != nil {
			t.Fatal(err)
		}
		mixed := strings.Replace(string(plain), "HMAC-SHA256", "HMAC-MD5", 1)
		r = s.run(t, mixed, "import", "pskc", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "totp-admin: -: KeyPackage 1 (serial HW0001): Suite \"HMAC-MD5\"") ||
			!strings.Contains(r.stderr, "1 key packages cannot be imported; nothing was imported") {
			t.Fatal(r)
		}
		if _, err := os.Stat(filepath.Join(s.store, store.TokensFile)); !os.IsNotExist(err) {
			t.Fatalf("tokens.db written: %v", err)
		}
		r = s.run(t, "", "import", "pskc", pskcFile("totp-plain.pskcxml"))
		if r.code != 0 || !strings.Contains(r.stdout, "Imported 2 hardware tokens, unassigned: HW0001, HW0002.") {
			t.Fatal(r)
		}
		// The same serial with another seed is refused, and the whole file with it.
		other := strings.Replace(string(plain), "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=", "MDk4NzY1NDMyMTA5ODc2NTQzMjE=", 1)
		other = strings.Replace(other, "HW0001", "HW0003", 1)
		r = s.run(t, other, "import", "pskc", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "KeyPackage 2 (serial HW0002): this serial was imported before with another seed") {
			t.Fatal(r)
		}
		if hs := s.hardware(t); len(hs) != 2 {
			t.Fatalf("hardware tokens = %d, want 2", len(hs))
		}
	})
}

func TestTokenAssign(t *testing.T) {
	s := newSite(t)
	key := figure6Key(t, 0o600)
	if r := s.run(t, "", "import", "pskc", "--key-file", key, pskcFile("totp-figure6.pskcxml")); r.code != 0 {
		t.Fatal(r)
	}
	// No code: the token goes back to the unassigned ones.
	r := s.run(t, "", "token", "assign", "987654321", "alice")
	if r.code != 1 || !strings.Contains(r.stdout, "hardware token 987654321 is unassigned again") ||
		!strings.Contains(r.stderr, "hardware token 987654321 not assigned to alice") {
		t.Fatal(r)
	}
	if len(s.tokens(t, "alice")) != 0 || len(s.hardware(t)) != 1 {
		t.Fatalf("after a failed assignment: alice has %v, %d unassigned", s.tokens(t, "alice"), len(s.hardware(t)))
	}
	if r := s.run(t, "", "token", "assign", "nope", "alice"); r.code != 1 || !strings.Contains(r.stderr, "no unassigned hardware token with this serial") {
		t.Fatal(r)
	}
	// A wrong code, then the right one.
	r = s.run(t, "00000000\n"+figure6Code(0)+"\n", "token", "assign", "987654321", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "Enter the 8-digit code the device 987654321 shows now") ||
		!strings.Contains(r.stdout, "Code verified: token") {
		t.Fatal(r)
	}
	toks := s.tokens(t, "alice")
	if len(toks) != 1 || toks[0].State != token.Active || toks[0].Serial != "987654321" || toks[0].Name != "hardware 987654321" ||
		toks[0].Digits != 8 {
		t.Fatalf("alice's tokens = %+v", toks)
	}
	if len(s.hardware(t)) != 0 {
		t.Fatal("the assigned token is still unassigned")
	}
	r = s.run(t, "", "token", "list", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "hardware 987654321") || !strings.Contains(r.stdout, "active") {
		t.Fatal(r)
	}
	if r := s.run(t, "", "token", "assign", "987654321", "bob"); r.code != 1 || !strings.Contains(r.stderr, "assigned to alice already") {
		t.Fatal(r)
	}
	// Handed back: unassigned again, and alice has no token.
	r = s.run(t, "", "token", "unassign", "alice", toks[0].ID)
	if r.code != 0 || !strings.Contains(r.stdout, "Hardware token 987654321 taken from alice") {
		t.Fatal(r)
	}
	if len(s.tokens(t, "alice")) != 0 || len(s.hardware(t)) != 1 {
		t.Fatal("unassign did not give the token back")
	}
	if r := s.run(t, "", "token", "unassign", "alice", toks[0].ID); r.code != 1 {
		t.Fatal(r)
	}
}

// A token whose file names a user of this host goes to that user at once, pending; token assign
// then verifies it.
func TestImportPSKCUser(t *testing.T) {
	s := newSite(t)
	plain, err := os.ReadFile(pskcFile("totp-plain.pskcxml"))
	if err != nil {
		t.Fatal(err)
	}
	file := strings.Replace(string(plain), "UID=alice", "UID=root", 1)
	r := s.run(t, file, "import", "pskc", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "Imported 1 hardware tokens, unassigned: HW0002.") ||
		!strings.Contains(r.stdout, "Hardware token HW0001 assigned to root as the file says") {
		t.Fatal(r)
	}
	toks := s.tokens(t, "root")
	if len(toks) != 1 || toks[0].State != token.Pending || toks[0].Serial != "HW0001" {
		t.Fatalf("root's tokens = %+v", toks)
	}
	if r := s.run(t, "", "token", "list", "root"); !strings.Contains(r.stdout, "pending") {
		t.Fatal(r)
	}
	p := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}
	code := totp.Code([]byte("12345678901234567890123456789012"), p, totp.Step(time.Now(), 60))
	r = s.run(t, code+"\n", "token", "assign", "HW0001", "root")
	if r.code != 0 || !strings.Contains(r.stdout, "Code verified") {
		t.Fatal(r)
	}
	if toks := s.tokens(t, "root"); len(toks) != 1 || toks[0].State != token.Active {
		t.Fatalf("root's tokens = %+v", toks)
	}
}

// TestRealRegistryHardware imports, lists, assigns and unassigns hardware tokens at a real
// totp-registry.
func TestRealRegistryHardware(t *testing.T) {
	reg := startRegistry(t)
	key := figure6Key(t, 0o600)
	reg.admin(t, 0, "", "user", "add", "alice", "--scope", "c1")

	r := reg.admin(t, 0, "", "import", "pskc", "--dry-run", "--key-file", key, pskcFile("totp-figure6.pskcxml"))
	contains(t, r, "Dry run, nothing written: would import 1 hardware tokens, unassigned: 987654321.")
	r = reg.admin(t, 0, "", "token", "list", "--unassigned")
	contains(t, r, "No unassigned hardware tokens.")
	r = reg.admin(t, 0, "", "import", "pskc", "--key-file", key, pskcFile("totp-figure6.pskcxml"), "--reason", "vendor batch 1")
	contains(t, r, "Imported 1 hardware tokens, unassigned: 987654321.", "token assign SERIAL USER")
	r = reg.admin(t, 0, "", "import", "pskc", "--key-file", key, pskcFile("totp-figure6.pskcxml"))
	contains(t, r, "Imported 0 hardware tokens, unassigned.", "1 already imported with the same seed, skipped: 987654321.")
	r = reg.admin(t, 1, "", "import", "pskc", pskcFile("rfc6030-figure10.pskcxml"))
	contains(t, r, "KeyPackage 4 (serial 9999999): HOTP", "4 key packages cannot be imported; nothing was imported")
	// The same serial with another seed: refused by the registry, by the package's place and serial.
	plain, err := os.ReadFile(pskcFile("totp-plain.pskcxml"))
	if err != nil {
		t.Fatal(err)
	}
	clash := strings.Replace(strings.Replace(string(plain), "HW0002", "987654321", 1),
		"MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=", "MDk4NzY1NDMyMTA5ODc2NTQzMjE=", 1)
	r = reg.admin(t, 1, clash, "import", "pskc", "-")
	contains(t, r, "totp-admin: -: KeyPackage 2 (serial 987654321): this serial was imported before with another seed")
	r = reg.admin(t, 0, "", "token", "list", "--unassigned", "--json")
	var list []token.HardwareInfo // HW0001 of the refused file is not there: nothing was imported
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Serial != "987654321" || list[0].Digits != 8 {
		t.Fatalf("token list --unassigned --json: %v\n%s", err, r)
	}

	// A wrong code three times: nothing assigned.
	r = reg.admin(t, 1, "00000000\n11111111\n22222222\n", "token", "assign", "987654321", "alice")
	contains(t, r, "That code is not valid", "hardware token 987654321 not assigned to alice: no valid code was entered")
	r = reg.admin(t, 0, "", "token", "list", "alice")
	contains(t, r, "alice has no tokens.")
	r = reg.admin(t, 0, figure6Code(0)+"\n", "token", "assign", "987654321", "alice", "--reason", "desk handover")
	contains(t, r, "Code verified: hardware token 987654321 is alice's token ", `("hardware 987654321"), active.`)
	r = reg.admin(t, 0, "", "token", "list", "alice")
	contains(t, r, "hardware 987654321", "SHA1       8       30      active")
	r = reg.admin(t, 0, "", "token", "list", "--unassigned")
	contains(t, r, "No unassigned hardware tokens.")
	r = reg.admin(t, 1, figure6Code(0)+"\n", "token", "assign", "987654321", "bob")
	contains(t, r, `totp-admin: no user "bob"`)
	reg.admin(t, 0, "", "user", "add", "bob", "--scope", "c1")
	r = reg.admin(t, 1, figure6Code(0)+"\n", "token", "assign", "987654321", "bob")
	contains(t, r, `hardware token "987654321" is assigned to "alice" already`)
	r = reg.admin(t, 0, "", "audit", "--json")
	contains(t, r, `"action": "import.hardware"`, `"action": "token.assign"`, `"target": "user/alice/hardware/987654321"`, "desk handover")

	var tok []token.Info
	r = reg.admin(t, 0, "", "token", "list", "alice", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &tok); err != nil || len(tok) != 1 || tok[0].Serial != "987654321" {
		t.Fatalf("token list --json: %v\n%s", err, r)
	}
	r = reg.admin(t, 0, "", "token", "unassign", "alice", tok[0].ID)
	contains(t, r, "Hardware token 987654321 taken from alice")
	r = reg.admin(t, 0, "", "token", "list", "--unassigned")
	contains(t, r, "987654321")
	// Assigned again, to bob: the code alice used is used up, a fresh one works.
	r = reg.admin(t, 0, figure6Code(1)+"\n", "token", "assign", "987654321", "bob")
	contains(t, r, "Code verified")
	for _, out := range []string{r.stdout, r.stderr, reg.logText()} {
		if strings.Contains(out, "12345678901234567890") || strings.Contains(out, "GEZDGNBVGY3TQOJQ") {
			t.Fatalf("a seed was printed or logged")
		}
	}
}
