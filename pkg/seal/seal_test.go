package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// keyB64 is a deterministic 32-byte key in base64, different for each fill byte.
func keyB64(fill byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, 32))
}

func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustKeyring(t *testing.T, content string) *Keyring {
	t.Helper()
	k, err := LoadKeyring(writeKeyFile(t, content))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var twoKeys = "# registry keys\nold " + keyB64(1) + "\n\n  new " + keyB64(2) + "  \n"

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	if k.PrimaryID() != "new" {
		t.Fatalf("PrimaryID() = %q, want new (the last line)", k.PrimaryID())
	}
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty", []byte{}, []byte("t/alice/1")},
		{"secret", []byte("12345678901234567890"), []byte("t/alice/1")},
		{"no aad", []byte("secret"), nil},
		{"large", bytes.Repeat([]byte("x"), 64<<10), []byte("k")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := k.Seal(tc.plaintext, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if want := 2 + len("new") + nonceSize + len(tc.plaintext) + tagSize; len(s) != want {
				t.Errorf("len(Seal) = %d, want %d", len(s), want)
			}
			if id, err := k.KeyID(s); id != "new" || err != nil || !IsSealed(s) {
				t.Errorf("KeyID = %q, %v; IsSealed = %v; want new, nil, true", id, err, IsSealed(s))
			}
			got, err := k.Open(s, tc.aad)
			if err != nil || !bytes.Equal(got, tc.plaintext) {
				t.Errorf("Open(Seal(%s)) = %d bytes, %v, want the plaintext", tc.name, len(got), err)
			}
			again, _ := k.Seal(tc.plaintext, tc.aad)
			if bytes.Equal(again, s) {
				t.Error("two Seals of the same plaintext are equal: nonce not random")
			}
		})
	}
}

func TestOpenFails(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	plain := []byte("JBSWY3DPEHPK3PXP-the-secret")
	aad := []byte("t/alice/1")
	s, err := k.Seal(plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(s); b[i] ^= 0x01; return b }
	set := func(i int, v byte) []byte { b := bytes.Clone(s); b[i] = v; return b }
	h := 2 + len("new")
	other := mustKeyring(t, "new "+keyB64(9)+"\n") // same id, another key
	fromElsewhere, _ := mustKeyring(t, "foreign "+keyB64(3)+"\n").Seal(plain, aad)
	tests := []struct {
		name   string
		k      *Keyring
		sealed []byte
		aad    []byte
		want   error
	}{
		{"aad mismatch", k, s, []byte("t/bob/1"), ErrDecrypt},
		{"no aad", k, s, nil, ErrDecrypt},
		{"version", k, flip(0), aad, ErrMalformed},
		{"key id length 0", k, set(1, 0), aad, ErrMalformed},
		{"key id length 33", k, set(1, 33), aad, ErrMalformed},
		{"key id length 2", k, set(1, 2), aad, ErrUnknownKey}, // "ne"
		{"key id character", k, set(3, '/'), aad, ErrMalformed},
		{"key id", k, flip(2), aad, ErrUnknownKey}, // "oew"
		{"nonce", k, flip(h), aad, ErrDecrypt},
		{"ciphertext", k, flip(h + nonceSize), aad, ErrDecrypt},
		{"tag", k, flip(len(s) - 1), aad, ErrDecrypt},
		{"truncated", k, s[:len(s)-1], aad, ErrDecrypt},
		{"truncated into the tag", k, s[:h+nonceSize+tagSize-1], aad, ErrMalformed},
		{"header only", k, s[:h], aad, ErrMalformed},
		{"empty", k, nil, aad, ErrMalformed},
		{"extended", k, append(bytes.Clone(s), 0), aad, ErrDecrypt},
		{"unknown key id", k, fromElsewhere, aad, ErrUnknownKey},
		{"same id, other key", other, s, aad, ErrDecrypt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.k.Open(tc.sealed, tc.aad)
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("Open(%s) = %q, %v, want nil, %v", tc.name, got, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Open(%s) error shows the plaintext: %v", tc.name, err)
			}
		})
	}
	for i := range s {
		if _, err := k.Open(flip(i), aad); err == nil {
			t.Errorf("Open with byte %d flipped succeeded", i)
		}
	}
}

func TestSealedHidesPlaintext(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	plain := []byte("ZZZZ-totp-secret-GEZDGNBVGY3TQOJQ-ZZZZ")
	for range 100 {
		s, err := k.Seal(plain, []byte("t/alice/1"))
		if err != nil {
			t.Fatal(err)
		}
		for _, needle := range [][]byte{plain, plain[5:15], []byte("GEZDGNBV"), []byte("secret")} {
			if bytes.Contains(s, needle) {
				t.Fatalf("sealed record contains %q", needle)
			}
		}
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	path := writeKeyFile(t, "# site keys\nold "+keyB64(1)) // no final newline
	k1, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("t/alice/1")
	a, _ := k1.Seal([]byte("alpha"), aad)

	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	id, err := appendKey(path, bytes.NewReader(bytes.Repeat([]byte{7}, 100)), now)
	if err != nil || id != "20260304T050607Z" {
		t.Fatalf("appendKey = %q, %v, want 20260304T050607Z", id, err)
	}
	k2, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if k2.PrimaryID() != id {
		t.Errorf("after AppendKey: PrimaryID() = %q, want %q", k2.PrimaryID(), id)
	}
	if got, err := k2.Open(a, aad); err != nil || string(got) != "alpha" {
		t.Errorf("new keyring Open(old record) = %q, %v, want alpha", got, err)
	}
	b, _ := k2.Seal([]byte("beta"), aad)
	if kid, _ := k2.KeyID(b); kid != id {
		t.Errorf("new seal under key %q, want %q", kid, id)
	}
	if _, err := k1.Open(b, aad); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old keyring Open(new record) = %v, want ErrUnknownKey", err)
	}
	r, changed, err := k2.Reseal(a, aad)
	if kid, _ := k2.KeyID(r); err != nil || !changed || kid != id {
		t.Errorf("Reseal(old record) = key %q, %v, %v, want %q, true, nil", kid, changed, err, id)
	}
	if got, _ := k2.Open(r, aad); string(got) != "alpha" {
		t.Errorf("Open(Reseal(old)) = %q, want alpha", got)
	}
	if same, changed, err := k2.Reseal(b, aad); !bytes.Equal(same, b) || changed || err != nil {
		t.Errorf("Reseal(current record) = changed %v, %v, want unchanged", changed, err)
	}
	if _, _, err := k2.Reseal(a, []byte("wrong")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Reseal(wrong aad) = %v, want ErrDecrypt", err)
	}

	// A second rotation in the same second gets a suffix; comments and old keys stay.
	id2, err := appendKey(path, bytes.NewReader(bytes.Repeat([]byte{8}, 100)), now)
	if err != nil || !strings.HasPrefix(id2, id+"-") || !validID(id2) {
		t.Errorf("second appendKey = %q, %v, want %s-SUFFIX", id2, err, id)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "# site keys" || !strings.HasPrefix(lines[1], "old ") {
		t.Errorf("key file after two rotations:\n%s", data)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestAppendKeyCreates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.keys")
	id, err := AppendKey(path, bytes.NewReader(bytes.Repeat([]byte{5}, 100)))
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyring(path)
	if err != nil || k.PrimaryID() != id {
		t.Fatalf("LoadKeyring after AppendKey to a new file = %v, primary %q, want %q", err, k.PrimaryID(), id)
	}
	// A short random source fails without touching the file.
	before, _ := os.ReadFile(path)
	if _, err := appendKey(path, bytes.NewReader([]byte{1, 2, 3}), time.Unix(0, 0)); err == nil {
		t.Error("appendKey with 3 random bytes succeeded")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a failed appendKey changed the file")
	}
	// A malformed file is not appended to.
	bad := writeKeyFile(t, "k1 not-base64!\n")
	if _, err := AppendKey(bad, bytes.NewReader(make([]byte, 100))); !errors.Is(err, ErrKeyFile) {
		t.Errorf("AppendKey(malformed file) = %v, want ErrKeyFile", err)
	}
}

func TestConcurrentAppendKeepsEveryKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "race.keys")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			id, err := appendKey(path, bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 100)), time.Unix(int64(i), 0))
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	k, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !k.Has(id) {
			t.Errorf("key %q lost by a concurrent AppendKey", id)
		}
	}
}

func TestLoadKeyringRefusesUnsafe(t *testing.T) {
	t.Parallel()
	good := "k " + keyB64(1) + "\n"
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"group-readable", func(t *testing.T, path string) { os.Chmod(path, 0o640) }},
		{"world-readable", func(t *testing.T, path string) { os.Chmod(path, 0o604) }},
		{"other owner", func(t *testing.T, path string) { os.Chown(path, 65534, 65534) }},
		{"symlink", func(t *testing.T, path string) {
			os.Rename(path, path+".real")
			os.Symlink(path+".real", path)
		}},
		{"directory", func(t *testing.T, path string) { os.Remove(path); os.Mkdir(path, 0o700) }},
		{"fifo", func(t *testing.T, path string) { os.Remove(path); syscall.Mkfifo(path, 0o600) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeKeyFile(t, good)
			tc.setup(t, path)
			if _, err := LoadKeyring(path); !errors.Is(err, securefile.ErrUnsafe) {
				t.Errorf("LoadKeyring(%s) = %v, want securefile.ErrUnsafe", tc.name, err)
			}
			if _, err := AppendKey(path, bytes.NewReader(make([]byte, 100))); err == nil {
				t.Errorf("AppendKey(%s) succeeded", tc.name)
			}
		})
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadKeyring(missing) = %v, want ErrNotExist", err)
	}
}

func TestMalformedKeyFiles(t *testing.T) {
	t.Parallel()
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 16))
	tests := []struct {
		name     string
		content  string
		wantLine string
	}{
		{"bad base64", "# c\na " + keyB64(1) + "\nb " + keyB64(2)[:20] + "!!" + keyB64(2)[22:] + "\n", "line 3:"},
		{"wrong length", "a " + short + "\n", "line 1:"},
		{"too long", "a " + keyB64(1) + keyB64(1) + "\n", "line 1:"},
		{"duplicate id", "a " + keyB64(1) + "\n#\na " + keyB64(2) + "\n", "line 3:"},
		{"bad id", "a.b " + keyB64(1) + "\n", "line 1:"},
		{"swapped fields", "\n" + keyB64(1) + " a\n", "line 2:"},
		{"long id", strings.Repeat("i", 33) + " " + keyB64(1) + "\n", "line 1:"},
		{"one field", "a\n", "line 1:"},
		{"three fields", "a " + keyB64(1) + " extra\n", "line 1:"},
		{"key alone", keyB64(6) + "\n", "line 1:"},
		{"no keys", "# nothing\n\n", "no keys"},
		{"empty", "", "no keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadKeyring(writeKeyFile(t, tc.content))
			if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), tc.wantLine) {
				t.Fatalf("LoadKeyring(%s) = %v, want ErrKeyFile naming %q", tc.name, err, tc.wantLine)
			}
			// No key material in the error: no base64 run of 8 or more from the file.
			for _, f := range strings.Fields(tc.content) {
				for i := 0; i+8 <= len(f); i++ {
					if len(f) > 32 && strings.Contains(err.Error(), f[i:i+8]) {
						t.Fatalf("LoadKeyring(%s) error %q shows key material %q", tc.name, err, f[i:i+8])
					}
				}
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	line, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{3}, 32)), "k-1_A")
	if err != nil || line != "k-1_A "+keyB64(3)+"\n" {
		t.Errorf("GenerateKey = %q, %v", line, err)
	}
	if _, err := ParseKeyring([]byte(line)); err != nil {
		t.Errorf("ParseKeyring(GenerateKey) = %v", err)
	}
	bad := []struct {
		name string
		id   string
		rand []byte
	}{
		{"empty id", "", make([]byte, 32)},
		{"space in id", "a b", make([]byte, 32)},
		{"short random", "a", make([]byte, 31)},
	}
	for _, tc := range bad {
		if _, err := GenerateKey(bytes.NewReader(tc.rand), tc.id); err == nil {
			t.Errorf("GenerateKey(%s) succeeded", tc.name)
		}
	}
}

func TestIsSealed(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	s, _ := k.Seal([]byte("x"), nil)
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"sealed", s, true},
		{"json", []byte(`{"secret":"GEZDGNBVGY3TQOJQ"}`), false},
		{"empty", nil, false},
		{"bad id byte", append([]byte{1, 1, '/'}, make([]byte, 40)...), false},
		{"too short", s[:20], false},
	}
	for _, tc := range tests {
		if got := IsSealed(tc.b); got != tc.want {
			t.Errorf("IsSealed(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := fmt.Appendf(nil, "secret %d %d", g, i)
				s, err := k.Seal(p, p)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := k.Open(s, p); err != nil || !bytes.Equal(got, p) {
					t.Errorf("Open = %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzOpen(f *testing.F) {
	k, err := ParseKeyring([]byte(twoKeys))
	if err != nil {
		f.Fatal(err)
	}
	s, _ := k.Seal([]byte("secret"), []byte("aad"))
	f.Add(s, []byte("aad"))
	f.Add([]byte{1, 3, 'o', 'l', 'd'}, []byte{})
	f.Add([]byte{}, []byte("aad"))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := k.Open(sealed, aad)
		if err != nil {
			if pt != nil {
				t.Fatal("Open returned plaintext with an error")
			}
			return
		}
		// Only records this keyring sealed open; the seed is the one such record.
		if !bytes.Equal(pt, []byte("secret")) || !bytes.Equal(aad, []byte("aad")) {
			t.Fatalf("Open of a forged record succeeded: %q", pt)
		}
		k.KeyID(sealed)
		IsSealed(sealed)
	})
}

func BenchmarkSealOpen(b *testing.B) {
	k, err := ParseKeyring([]byte(twoKeys))
	if err != nil {
		b.Fatal(err)
	}
	plain, aad := make([]byte, 300), []byte("t/alice/1")
	b.ReportAllocs()
	for b.Loop() {
		s, err := k.Seal(plain, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Open(s, aad); err != nil {
			b.Fatal(err)
		}
	}
}
