package admin

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const (
	secretA = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" // 20 bytes
	secretB = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // "12345678901234567890"
)

func TestImportCSV(t *testing.T) {
	good := "alice," + secretA + ",phone\nbob," + secretB + "\n"
	bad := good + "carol,not base32!\n# fine\ndave\n"
	t.Run("good file", func(t *testing.T) {
		a := newAdmin(t)
		rep, err := a.ImportCSV(strings.NewReader(good), ImportOptions{})
		if err != nil || rep.Added != 2 {
			t.Fatalf("ImportCSV = %+v, %v", rep, err)
		}
		toks, _ := a.ListTokens("")
		if len(toks) != 2 || toks[0].Name != "phone" || toks[1].Name != "imported" || toks[0].State != token.Active {
			t.Fatalf("tokens = %+v", toks)
		}
		// Importing again adds nothing.
		rep, err = a.ImportCSV(strings.NewReader(good), ImportOptions{})
		if err != nil || rep.Added != 0 || rep.Duplicates != 2 {
			t.Fatalf("second ImportCSV = %+v, %v; want 2 duplicates", rep, err)
		}
	})
	t.Run("bad lines write nothing", func(t *testing.T) {
		a := newAdmin(t)
		rep, err := a.ImportCSV(strings.NewReader(bad), ImportOptions{})
		if !errors.Is(err, ErrInvalidLines) {
			t.Fatalf("ImportCSV = %v, want ErrInvalidLines", err)
		}
		if len(rep.Invalid) != 2 || rep.Invalid[0].Line != 3 || rep.Invalid[1].Line != 5 {
			t.Fatalf("invalid = %v, want lines 3 and 5", rep.Invalid)
		}
		if _, err := os.Stat(a.Tokens.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("tokens.db exists after a refused import: %v", err)
		}
	})
	t.Run("skip invalid", func(t *testing.T) {
		a := newAdmin(t)
		rep, err := a.ImportCSV(strings.NewReader(bad), ImportOptions{SkipInvalid: true})
		if err != nil || rep.Added != 2 || len(rep.Invalid) != 2 {
			t.Fatalf("ImportCSV = %+v, %v", rep, err)
		}
	})
	t.Run("unknown users reported", func(t *testing.T) {
		a := newAdmin(t)
		known := func(u string) bool { return u == "bob" }
		in := bad + "alice," + secretB + ",laptop\nerin," + secretA + "\n"
		rep, err := a.ImportCSV(strings.NewReader(in), ImportOptions{SkipInvalid: true, KnownUser: known})
		if err != nil || rep.Added != 4 || !slices.Equal(rep.UnknownUsers, []string{"alice", "erin"}) {
			t.Fatalf("ImportCSV = %+v, %v; want 4 added, unknown users alice and erin", rep, err)
		}
		// Nothing added: nothing to report.
		rep, err = a.ImportCSV(strings.NewReader(in), ImportOptions{SkipInvalid: true, KnownUser: known})
		if err != nil || rep.Added != 0 || rep.UnknownUsers != nil {
			t.Fatalf("second ImportCSV = %+v, %v; want nothing added or reported", rep, err)
		}
	})
	t.Run("params", func(t *testing.T) {
		a := newAdmin(t)
		p := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}
		if _, err := a.ImportCSV(strings.NewReader(good), ImportOptions{Params: p}); err != nil {
			t.Fatal(err)
		}
		toks, _ := a.ListTokens("alice")
		if got := (totp.Params{Algorithm: toks[0].Algorithm, Digits: toks[0].Digits, Period: toks[0].Period}); got != p {
			t.Fatalf("params = %+v, want %+v", got, p)
		}
	})
}

// csvFile makes n lines for n/2 users (two tokens each) and returns the file and the secrets.
func csvFile(n int) ([]byte, map[string][][]byte) {
	r := rand.NewChaCha8([32]byte{9})
	var b bytes.Buffer
	want := map[string][][]byte{}
	for i := range n {
		secret := make([]byte, 20)
		_, _ = r.Read(secret)
		user := fmt.Sprintf("user%05d", (i*7919)%(n/2)) // not in order
		want[user] = append(want[user], secret)
		fmt.Fprintf(&b, "%s,%s,dev%d\n", user, totp.EncodeSecret(secret), i)
	}
	return b.Bytes(), want
}

func TestImportCSV10k(t *testing.T) {
	const n = 10000
	data, want := csvFile(n)
	a := newAdmin(t)
	start := time.Now()
	rep, err := a.ImportCSV(bytes.NewReader(data), ImportOptions{})
	elapsed := time.Since(start)
	if err != nil || rep.Added != n {
		t.Fatalf("ImportCSV = %+v, %v", rep, err)
	}
	t.Logf("imported %d tokens in %v: %.0f tokens/s", n, elapsed, n/elapsed.Seconds())
	got := map[string][][]byte{}
	if err := a.Tokens.View(func(x *store.TokensTx) error {
		return x.ForEachToken(func(tok token.Token) error {
			if tok.State != token.Active || tok.Algorithm != totp.SHA1 || tok.Digits != 6 || tok.Period != 30 {
				return fmt.Errorf("token %+v", tok.ID)
			}
			got[tok.User] = append(got[tok.User], tok.Secret)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d users stored, want %d", len(got), len(want))
	}
	for u, secrets := range want {
		for _, s := range secrets {
			if !slices.ContainsFunc(got[u], func(g []byte) bool { return bytes.Equal(g, s) }) {
				t.Fatalf("user %s lacks an imported secret", u)
			}
		}
		if len(got[u]) != len(secrets) {
			t.Fatalf("user %s has %d tokens, want %d", u, len(got[u]), len(secrets))
		}
	}
}

func BenchmarkImportCSV10k(b *testing.B) {
	data, _ := csvFile(10000)
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "store")
		_ = os.Mkdir(dir, 0o700)
		a := newBenchAdmin(dir)
		b.StartTimer()
		if _, err := a.ImportCSV(bytes.NewReader(data), ImportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func TestImportGA(t *testing.T) {
	a := newAdmin(t)
	if _, err := a.NewBackupCodes("alice"); err != nil {
		t.Fatal(err)
	}
	f, err := tokenimport.ReadGAFile(filepath.Join("..", "tokenimport", "testdata", "google_authenticator"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.ImportGA("alice", f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Already || res.Scratch != 5 || res.Replaced != backupcode.Count || res.Token.Name != tokenimport.GAName || res.Token.State != token.Active {
		t.Fatalf("ImportGA = %+v", res)
	}
	d, err := a.Tokens.ReadUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Tokens) != 1 || totp.EncodeSecret(d.Tokens[0].Secret) != "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" {
		t.Fatalf("tokens = %+v", d.Tokens)
	}
	if len(d.Backup) != 5 {
		t.Fatalf("%d backup codes, want the 5 scratch codes", len(d.Backup))
	}
	for _, code := range []string{"12345678", "56789012"} {
		norm, _ := backupcode.Normalize(code)
		if !slices.ContainsFunc(d.Backup, func(r token.BackupCode) bool { return backupcode.Match(norm, r) }) {
			t.Errorf("scratch code %s is not a backup code", code)
		}
	}
	again, err := a.ImportGA("alice", f)
	if err != nil || !again.Already {
		t.Fatalf("second ImportGA = %+v, %v; want Already", again, err)
	}
	if d2, _ := a.Tokens.ReadUser("alice"); len(d2.Tokens) != 1 || len(d2.Backup) != 5 {
		t.Fatalf("second import changed the store: %d tokens, %d codes", len(d2.Tokens), len(d2.Backup))
	}
}
