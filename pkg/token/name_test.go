package token

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ok   bool
	}{
		{"phone", true}, {"Téléphone 📱", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"a\nb", false}, {"a\x1bb", false},
		{"a\u0085b", false}, {"a\u202eb", false}, {"a\u2066b", false}, {"a\u200bb", false},
		{"a\u2028b", false}, {"a\ufeffb", false}, {"a\xffb", false},
	}
	for _, c := range cases {
		if err := CheckName(c.name); (err == nil) != c.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", c.name, err, c.ok)
		}
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"é 📱", "é 📱"},
		{"a\x1b[31mb", "a?[31mb"},
		{"a\x7fb\u0085c", "a?b?c"},
		{"evil\u202etxt.exe", "evil?txt.exe"},
		{"a\u2066b\u2069", "a?b?"},
		{"zero\u200bwidth", "zero?width"},
		{"line\u2028para\u2029", "line?para?"},
		{"bad\xffutf8", "bad?utf8"},
		{"tab\tnew\n", "tab?new?"},
		// The cases of the former token.Clean and enrollcli.Clean.
		{"alice", "alice"},
		{"laptop KeePassXC", "laptop KeePassXC"},
		{"Zoë 電話", "Zoë 電話"},
		{"a\x1b[2Jb", "a?[2Jb"},
		{"a\nb\tc", "a?b?c"},
		{"a\u009bb", "a?b"},
		{"a\u202eb", "a?b"},
		{"a\xffb", "a?b"},
		{"a\x1b]0;x\x07b", "a?]0;x?b"},
		{"rtl\u202eevil", "rtl?evil"},
		{"c1\u009bx", "c1?x"},
	}
	for _, c := range cases {
		if got := Clean(c.in); got != c.want {
			t.Errorf("Clean(%q) = %q, want %q", c.in, got, c.want)
		}
		if !Printable(Clean(c.in)) {
			t.Errorf("Printable(Clean(%q)) = false", c.in)
		}
	}
}

func TestNewIDAndDefaultName(t *testing.T) {
	t.Parallel()
	r := bytes.NewReader([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	id, err := NewID(r, func(id string) bool { return id == "01020304" })
	if err != nil || id != "05060708" {
		t.Errorf("NewID = %q, %v; want 05060708", id, err)
	}
	if _, err := NewID(bytes.NewReader(nil), func(string) bool { return false }); err == nil {
		t.Error("NewID(empty reader) = nil error")
	}
	toks := []Token{{Name: "token-2"}, {Name: "phone"}}
	if got := DefaultName(toks); got != "token-3" {
		t.Errorf("DefaultName = %q, want token-3", got)
	}
	toks = append(toks, Token{Name: "token-4"})
	if got := DefaultName(toks); got != "token-5" {
		t.Errorf("DefaultName = %q, want token-5", got)
	}
}

// TestJSON pins the record form that tokens.db and the registry store.
func TestJSON(t *testing.T) {
	t.Parallel()
	tk := Token{User: "u", ID: "i", Name: "n", Algorithm: totp.SHA1, Digits: 6, Period: 30, Secret: []byte("0123456789"),
		State: Active, Created: time.Unix(0, 0).UTC(), UsedStep: 7}
	b, _ := json.Marshal(tk)
	want := `{"user":"u","id":"i","name":"n","algorithm":"SHA1","digits":6,"period":30,"secret":"MDEyMzQ1Njc4OQ==","state":"active","created":"1970-01-01T00:00:00Z","used_step":7}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	c := BackupCode{User: "u", ID: "b", Salt: []byte{1}, Hash: []byte{2}, Created: time.Unix(0, 0).UTC()}
	b, _ = json.Marshal(c)
	if want := `{"user":"u","id":"b","salt":"AQ==","hash":"Ag==","created":"1970-01-01T00:00:00Z"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	if err := tk.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	tk.Name = "a\u202eb"
	if err := tk.Validate(); err == nil {
		t.Error("Validate(bidi name) = nil")
	}
}
