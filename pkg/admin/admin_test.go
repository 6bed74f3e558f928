package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// t0 is an RFC 6238 test instant.
var t0 = time.Unix(1111111109, 0).UTC()

// secret20 is the RFC 6238 SHA1 seed.
var secret20 = []byte("12345678901234567890")

// newAdmin returns an Admin on a fresh 0700 store directory, a fixed clock (t0) and a seeded
// random source. securefile wants files owned by the effective uid, which the test's own are.
func newAdmin(t *testing.T) *Admin {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return newBenchAdmin(dir)
}

func newBenchAdmin(dir string) *Admin {
	cfg := config.Default()
	cfg.Store.Dir = dir
	a := New(&cfg)
	a.Rand = rand.NewChaCha8([32]byte{1, 2, 3})
	a.Now = func() time.Time { return t0 }
	return a
}

func storedToken(t *testing.T, a *Admin, user, id string) token.Token {
	t.Helper()
	var tok token.Token
	if err := a.Tokens.View(func(x *store.TokensTx) error {
		var err error
		tok, err = x.Token(user, id)
		return err
	}); err != nil {
		t.Fatalf("Token(%s, %s): %v", user, id, err)
	}
	return tok
}

func lastStep(t *testing.T, a *Admin, user, id string) uint64 {
	t.Helper()
	var s uint64
	if err := a.State.View(func(x *store.StateTx) error { s = x.LastStep(user, id); return nil }); err != nil {
		t.Fatal(err)
	}
	return s
}

func codeAt(secret []byte, p totp.Params, at time.Time, steps int) string {
	return totp.Code(secret, p, uint64(int64(totp.Step(at, p.Period))+int64(steps)))
}

func TestConfirm(t *testing.T) {
	p6 := totp.DefaultParams
	p8 := totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}
	tests := []struct {
		name   string
		params totp.Params
		answer func(p totp.Params) string
		want   CodeCheck
	}{
		{"current code", p6, func(p totp.Params) string { return codeAt(secret20, p, t0, 0) }, CodeCheck{Outcome: Verified}},
		{"previous step", p6, func(p totp.Params) string { return codeAt(secret20, p, t0, -1) }, CodeCheck{Outcome: Verified}},
		{"next step with spaces", p6, func(p totp.Params) string {
			c := codeAt(secret20, p, t0, 1)
			return " " + c[:3] + " " + c[3:] + " "
		}, CodeCheck{Outcome: Verified}},
		{"8 digits sha256", p8, func(p totp.Params) string { return codeAt(secret20, p, t0, 0) }, CodeCheck{Outcome: Verified}},
		{"device 5 steps ahead", p6, func(p totp.Params) string { return codeAt(secret20, p, t0, 5) }, CodeCheck{Outcome: ClockSkew, SkewSeconds: 150}},
		{"device 3 steps behind", p6, func(p totp.Params) string { return codeAt(secret20, p, t0, -3) }, CodeCheck{Outcome: ClockSkew, SkewSeconds: -90}},
		{"device 2 minutes behind at 60s", p8, func(p totp.Params) string { return codeAt(secret20, p, t0, -2) }, CodeCheck{Outcome: ClockSkew, SkewSeconds: -120}},
		{"11 steps away is just wrong", p6, func(p totp.Params) string { return codeAt(secret20, p, t0, 11) }, CodeCheck{Outcome: WrongCode}},
		{"letters", p6, func(totp.Params) string { return "12a456" }, CodeCheck{Outcome: NotACode}},
		{"too short", p6, func(totp.Params) string { return "12345" }, CodeCheck{Outcome: NotACode}},
		{"6 digits for an 8-digit token", p8, func(totp.Params) string { return "123456" }, CodeCheck{Outcome: NotACode}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAdmin(t)
			e, err := a.AddToken("alice", AddOptions{Secret: secret20, Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			if e.Token.State != token.Pending {
				t.Fatalf("new token state = %s, want pending", e.Token.State)
			}
			answer := tc.answer(tc.params)
			if tc.want.Outcome == WrongCode {
				// Make sure the "wrong" code is not valid by chance within the window or hint range.
				for d := -enroll.SkewHint; d <= enroll.SkewHint; d++ {
					if codeAt(secret20, tc.params, t0, d) == answer {
						t.Skip("test code collides with a nearby step")
					}
				}
			}
			got, err := a.Confirm("alice", e.Token.ID, answer)
			if err != nil {
				t.Fatalf("Confirm: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Confirm(%q) = %+v, want %+v", answer, got, tc.want)
			}
			tok := storedToken(t, a, "alice", e.Token.ID)
			step := lastStep(t, a, "alice", e.Token.ID)
			if tc.want.Outcome != Verified {
				var want uint64 // a skewed code's step is burned; nothing else is recorded
				if tc.want.Outcome == ClockSkew {
					want = uint64(int64(totp.Step(t0, tc.params.Period)) + int64(tc.want.SkewSeconds/tc.params.Period))
				}
				if tok.State != token.Pending || step != want {
					t.Fatalf("after %v: state %s, last step %d; want pending, %d", tc.want.Outcome, tok.State, step, want)
				}
				return
			}
			if tok.State != token.Active {
				t.Fatalf("state after a verified code = %s, want active", tok.State)
			}
			if step < totp.Step(t0, tc.params.Period)-1 {
				t.Fatalf("last step = %d, want the matched step near %d", step, totp.Step(t0, tc.params.Period))
			}
			if _, err := a.Confirm("alice", e.Token.ID, answer); !errors.Is(err, ErrNotPending) {
				t.Fatalf("second Confirm = %v, want ErrNotPending", err)
			}
		})
	}
}

// TestConfirmSkewCodeBurned: a code for now+2 steps gets the clock hint and is refused again
// when its time comes.
func TestConfirmSkewCodeBurned(t *testing.T) {
	a := newAdmin(t)
	e, err := a.AddToken("alice", AddOptions{Secret: secret20})
	if err != nil {
		t.Fatal(err)
	}
	p := totp.DefaultParams
	early := codeAt(secret20, p, t0, 2)
	if got, err := a.Confirm("alice", e.Token.ID, early); err != nil || got != (CodeCheck{Outcome: ClockSkew, SkewSeconds: 60}) {
		t.Fatalf("Confirm(now+2 steps) = %+v, %v; want ClockSkew 60", got, err)
	}
	a.Now = func() time.Time { return t0.Add(60 * time.Second) }
	if got, err := a.Confirm("alice", e.Token.ID, early); err != nil || got.Outcome != WrongCode {
		t.Fatalf("Confirm(the same code in its step) = %+v, %v; want WrongCode", got, err)
	}
	if got, err := a.Confirm("alice", e.Token.ID, codeAt(secret20, p, t0, 3)); err != nil || got.Outcome != Verified {
		t.Fatalf("Confirm(a later code) = %+v, %v; want Verified", got, err)
	}
}

// The verified code's step goes to state.db, so the verifier refuses the same code afterwards.
func TestConfirmStoresMatchedStep(t *testing.T) {
	a := newAdmin(t)
	e, err := a.AddToken("alice", AddOptions{Secret: secret20})
	if err != nil {
		t.Fatal(err)
	}
	code := codeAt(secret20, totp.DefaultParams, t0, 1)
	if got, err := a.Confirm("alice", e.Token.ID, code); err != nil || got.Outcome != Verified {
		t.Fatalf("Confirm = %+v, %v", got, err)
	}
	if got, want := lastStep(t, a, "alice", e.Token.ID), totp.Step(t0, 30)+1; got != want {
		t.Fatalf("last step = %d, want %d", got, want)
	}
}

func TestAddToken(t *testing.T) {
	a := newAdmin(t)
	first, err := a.AddToken("alice", AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(first.Token.Secret); n != totp.DefaultSecretLen {
		t.Errorf("generated secret has %d bytes, want %d", n, totp.DefaultSecretLen)
	}
	if first.Token.Name != "token-1" || len(first.Token.ID) != 2*token.IDLen {
		t.Errorf("first token = %q/%q, want name token-1 and an %d-hex-digit id", first.Token.Name, first.Token.ID, 2*token.IDLen)
	}
	if first.HasBackupCodes {
		t.Errorf("HasBackupCodes = true for a new user")
	}
	second, err := a.AddToken("alice", AddOptions{Name: "laptop KeePassXC", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if second.Token.State != token.Active || second.Token.ID == first.Token.ID {
		t.Errorf("second token = %+v", second.Token)
	}
	third, err := a.AddToken("alice", AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if third.Token.Name != "token-3" {
		t.Errorf("third default name = %q, want token-3", third.Token.Name)
	}
	for _, tc := range []struct {
		name, user string
		o          AddOptions
	}{
		{"empty user", "", AddOptions{}},
		{"control in user", "al\x1bice", AddOptions{}},
		{"control in name", "alice", AddOptions{Name: "ph\x1b[2Jone"}},
		{"long name", "alice", AddOptions{Name: strings.Repeat("n", 65)}},
		{"short secret", "alice", AddOptions{Secret: []byte("short")}},
		{"bad digits", "alice", AddOptions{Params: totp.Params{Algorithm: totp.SHA1, Digits: 9, Period: 30}}},
		{"bad algorithm", "alice", AddOptions{Params: totp.Params{Algorithm: "MD5", Digits: 6, Period: 30}}},
		{"colon in user", "al:ice", AddOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.AddToken(tc.user, tc.o); err == nil {
				t.Fatalf("AddToken(%q, %+v) succeeded, want an error", tc.user, tc.o)
			}
		})
	}
	toks, err := a.ListTokens("alice")
	if err != nil || len(toks) != 3 {
		t.Fatalf("ListTokens = %d tokens, %v; want 3 (failed adds must write nothing)", len(toks), err)
	}
}

func TestVerifyInteractive(t *testing.T) {
	good := codeAt(secret20, totp.DefaultParams, t0, 0)
	wrong := "000000"
	for d := -enroll.SkewHint; d <= enroll.SkewHint; d++ {
		if codeAt(secret20, totp.DefaultParams, t0, d) == wrong {
			t.Fatal("pick another wrong code")
		}
	}
	ahead := codeAt(secret20, totp.DefaultParams, t0, 4)
	behind := codeAt(secret20, totp.DefaultParams, t0, -4)
	tests := []struct {
		name       string
		input      string
		wantErr    error
		wantActive bool
		wantOut    []string
	}{
		{"right code", good + "\n", nil, true, []string{"Code verified"}},
		{"wrong then right", wrong + "\n" + good + "\n", nil, true, []string{"not valid", "2 tries left", "Code verified"}},
		{"typo then right, CRLF", "12x456\r\n" + good + "\r\n", nil, true, []string{"not a 6-digit code", "Code verified"}},
		{"blank lines do not count", "\n\n\n" + wrong + "\n\n" + wrong + "\n" + good + "\n", nil, true, []string{"1 try left", "Code verified"}},
		{"clock behind then right", behind + "\n" + good + "\n", nil, true, []string{"about 120 seconds behind", "Code verified"}},
		// A code shown ahead of its time burns the steps up to its own: the current code is refused.
		{"clock ahead burns the steps before", ahead + "\n" + good + "\n" + ahead + "\n", ErrNotVerified, false,
			[]string{"about 120 seconds ahead", "not valid", "No valid code entered", "was removed"}},
		{"last line without newline", good, nil, true, []string{"Code verified"}},
		{"end of input", "", ErrCancelled, false, []string{"end of input", "was removed"}},
		{"wrong then end of input", wrong + "\n", ErrCancelled, false, []string{"was removed"}},
		{"three wrong codes", wrong + "\n" + wrong + "\n" + wrong + "\n" + good + "\n", ErrNotVerified, false,
			[]string{"No valid code entered", "was removed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAdmin(t)
			e, err := a.AddToken("alice", AddOptions{Secret: secret20})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = a.VerifyInteractive(context.Background(), e, strings.NewReader(tc.input), &out)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyInteractive = %v, want %v\n%s", err, tc.wantErr, out.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			toks, err := a.ListTokens("alice")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantActive && (len(toks) != 1 || toks[0].State != token.Active):
				t.Fatalf("tokens = %+v, want one active", toks)
			case !tc.wantActive && len(toks) != 0:
				t.Fatalf("tokens = %+v, want the pending token removed", toks)
			}
		})
	}
}

func TestVerifyInteractiveInterrupted(t *testing.T) {
	a := newAdmin(t)
	e, err := a.AddToken("alice", AddOptions{Secret: secret20})
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe() // never written: the user walks away
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- a.VerifyInteractive(ctx, e, r, &out) }()
	cancel()
	if err := <-done; !errors.Is(err, ErrCancelled) {
		t.Fatalf("VerifyInteractive after cancel = %v, want ErrCancelled", err)
	}
	if toks, _ := a.ListTokens("alice"); len(toks) != 0 {
		t.Fatalf("tokens after interrupt = %+v, want none", toks)
	}
	if !strings.Contains(out.String(), "Interrupted") {
		t.Errorf("output lacks Interrupted:\n%s", out.String())
	}
}

func TestWriteEnrollment(t *testing.T) {
	a := newAdmin(t)
	e, err := a.AddToken("alice", AddOptions{Secret: secret20, Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteEnrollment(&out, e, QR{Show: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"otpauth://totp/pam-totp:alice?secret=" + totp.EncodeSecret(secret20),
		"secret (base32): " + totp.EncodeSecret(secret20), "secret (hex):    3132333435363738393031323334353637383930",
		"█", "pending"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("enrollment screen lacks %q:\n%s", want, out.String())
		}
	}
}

func TestTokenLifecycle(t *testing.T) {
	a := newAdmin(t)
	pending, err := a.AddToken("alice", AddOptions{Secret: secret20, Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	active, err := a.AddToken("alice", AddOptions{Name: "laptop", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddToken("bob", AddOptions{Active: true}); err != nil {
		t.Fatal(err)
	}
	// A login accepted a code of alice's laptop token at step 40000000.
	if err := a.State.Update(func(x *store.StateTx) error {
		return x.SetLastStep("alice", active.Token.ID, 40000000)
	}); err != nil {
		t.Fatal(err)
	}
	all, err := a.ListTokens("")
	if err != nil || len(all) != 3 || all[0].User != "alice" || all[2].User != "bob" {
		t.Fatalf("ListTokens() = %+v, %v", all, err)
	}
	js, _ := json.Marshal(all)
	if bytes.Contains(js, []byte("secret")) || bytes.Contains(js, []byte(totp.EncodeSecret(secret20))) {
		t.Fatalf("listing holds a secret: %s", js)
	}
	for _, ti := range all {
		want := time.Time{}
		if ti.ID == active.Token.ID {
			want = time.Unix(40000000*30, 0).UTC()
		}
		if !ti.LastUsed.Equal(want) {
			t.Errorf("token %s last used %v, want %v", ti.ID, ti.LastUsed, want)
		}
	}

	// state drops SetState's report of a change (TestSetStateTwice checks it).
	state := func(i token.Info, _ bool, err error) (token.Info, error) { return i, err }
	steps := []struct {
		name    string
		op      func() (token.Info, error)
		wantErr error
		want    token.State
		id      string
	}{
		{"enable pending refused", func() (token.Info, error) { return state(a.SetState("alice", pending.Token.ID, token.Active)) }, ErrPending, token.Pending, pending.Token.ID},
		{"disable pending refused", func() (token.Info, error) { return state(a.SetState("alice", pending.Token.ID, token.Disabled)) }, ErrPending, token.Pending, pending.Token.ID},
		{"disable active", func() (token.Info, error) { return state(a.SetState("alice", active.Token.ID, token.Disabled)) }, nil, token.Disabled, active.Token.ID},
		{"enable disabled", func() (token.Info, error) { return state(a.SetState("alice", active.Token.ID, token.Active)) }, nil, token.Active, active.Token.ID},
		{"enable unknown", func() (token.Info, error) { return state(a.SetState("alice", "nope", token.Active)) }, store.ErrNotFound, "", ""},
		{"remove other user's id", func() (token.Info, error) { return a.RemoveToken("bob", active.Token.ID) }, store.ErrNotFound, token.Active, active.Token.ID},
		{"remove pending", func() (token.Info, error) { return a.RemoveToken("alice", pending.Token.ID) }, nil, "", pending.Token.ID},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			_, err := s.op()
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("err = %v, want %v", err, s.wantErr)
			}
			if s.id == "" {
				return
			}
			toks, _ := a.ListTokens("alice")
			var got token.State
			for _, ti := range toks {
				if ti.ID == s.id {
					got = token.State(ti.State)
				}
			}
			if got != s.want {
				t.Fatalf("state of %s = %q, want %q", s.id, got, s.want)
			}
		})
	}
}

func TestNewBackupCodes(t *testing.T) {
	a := newAdmin(t)
	first, err := a.NewBackupCodes("alice")
	if err != nil {
		t.Fatal(err)
	}
	var old token.BackupCode
	if err := a.Tokens.View(func(x *store.TokensTx) error {
		recs, err := x.BackupCodes("alice")
		old = recs[0]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.State.Update(func(x *store.StateTx) error { return x.UseBackup("alice", old.ID, t0) }); err != nil {
		t.Fatal(err)
	}
	second, err := a.NewBackupCodes("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != backupcode.Count {
		t.Fatalf("got %d codes, want %d", len(second), backupcode.Count)
	}
	var recs []token.BackupCode
	if err := a.Tokens.View(func(x *store.TokensTx) error {
		var err error
		recs, err = x.BackupCodes("alice")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != backupcode.Count {
		t.Fatalf("stored %d codes, want %d (the old set replaced)", len(recs), backupcode.Count)
	}
	matches := func(code string) bool {
		norm, ok := backupcode.Normalize(code)
		if !ok {
			t.Fatalf("Normalize(%q) failed", code)
		}
		for _, r := range recs {
			if backupcode.Match(norm, r) {
				return true
			}
		}
		return false
	}
	for _, c := range second {
		if !matches(c) {
			t.Errorf("new code %q matches no stored hash", c)
		}
	}
	for _, c := range first {
		if matches(c) {
			t.Errorf("old code %q still matches after replacement", c)
		}
	}
	if err := a.State.View(func(x *store.StateTx) error {
		if x.BackupUsed("alice", old.ID) {
			t.Errorf("old used mark kept")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestUnlockAndReset(t *testing.T) {
	a := newAdmin(t)
	e, err := a.AddToken("alice", AddOptions{Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.NewBackupCodes("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddToken("bob", AddOptions{Active: true}); err != nil {
		t.Fatal(err)
	}
	locked := store.Failures{Count: 25, Last: t0, Until: t0.Add(time.Hour)}
	if err := a.State.Update(func(x *store.StateTx) error {
		if err := x.SetFailures("alice", locked); err != nil {
			return err
		}
		return x.SetLastStep("alice", e.Token.ID, 99)
	}); err != nil {
		t.Fatal(err)
	}
	before, err := a.Unlock("alice")
	if err != nil || before.Count != 25 {
		t.Fatalf("Unlock = %+v, %v; want the 25 failures reported", before, err)
	}
	if err := a.State.View(func(x *store.StateTx) error {
		if f := x.Failures("alice"); f.Count != 0 || !f.Until.IsZero() {
			t.Errorf("failures after unlock = %+v", f)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r, err := a.Reset("alice")
	if err != nil || r.Tokens != 1 || r.BackupCodes != backupcode.Count {
		t.Fatalf("Reset = %+v, %v", r, err)
	}
	if toks, _ := a.ListTokens("alice"); len(toks) != 0 {
		t.Errorf("alice still has tokens: %+v", toks)
	}
	if toks, _ := a.ListTokens("bob"); len(toks) != 1 {
		t.Errorf("reset of alice touched bob: %+v", toks)
	}
	if s := lastStep(t, a, "alice", e.Token.ID); s != 0 {
		t.Errorf("last step after reset = %d", s)
	}
}

// Symlinks and FIFOs planted where the databases go are refused, and nothing is written through
// them.
func TestPlantedFiles(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		plant func(t *testing.T, path, target string)
		op    func(a *Admin) error
	}{
		{"symlink tokens.db", store.TokensFile, symlink, func(a *Admin) error {
			_, err := a.AddToken("alice", AddOptions{Active: true})
			return err
		}},
		{"symlink state.db", store.StateFile, symlink, func(a *Admin) error { _, err := a.Unlock("alice"); return err }},
		{"fifo tokens.db", store.TokensFile, fifo, func(a *Admin) error { _, err := a.NewBackupCodes("alice"); return err }},
		{"fifo state.db", store.StateFile, fifo, func(a *Admin) error { _, err := a.Unlock("alice"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAdmin(t)
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, filepath.Join(a.Config.Store.Dir, tc.file), target)
			done := make(chan error, 1)
			go func() { done <- tc.op(a) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("operation succeeded through a planted file")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("operation hangs on a planted file")
			}
			if b, _ := os.ReadFile(target); string(b) != "precious" {
				t.Fatalf("symlink target changed: %q", b)
			}
		})
	}
}

func symlink(t *testing.T, path, target string) {
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func fifo(t *testing.T, path, _ string) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSetStateTwice: disabling a disabled token (or enabling an active one) changes nothing and
// says so, so that configuration management can run it again and again.
func TestSetStateTwice(t *testing.T) {
	a := newAdmin(t)
	en, err := a.AddToken("alice", AddOptions{Name: "laptop", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		to          token.State
		wantChanged bool
	}{{token.Disabled, true}, {token.Disabled, false}, {token.Active, true}, {token.Active, false}} {
		info, changed, err := a.SetState("alice", en.Token.ID, step.to)
		if err != nil || changed != step.wantChanged || info.State != step.to {
			t.Errorf("SetState(%s) = %s, %v, %v; want %s, %v, nil", step.to, info.State, changed, err, step.to, step.wantChanged)
		}
	}
}
