package confkey

import (
	"bytes"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestNearest(t *testing.T) {
	t.Parallel()
	names := []string{"window", "skew_hint_steps", "store", "ssh_grace", "mode"}
	tests := []struct{ in, want string }{
		{"windoww", "window"},
		{"Window", "window"},
		{"ssh_grac", "ssh_grace"},
		{"stor", "store"},
		{"skew_hint_step", "skew_hint_steps"},
		{"colour", ""},
		{"mod", "mode"},
		{"x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := Nearest(tt.in, names); got != tt.want {
				t.Errorf("Nearest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

type section struct {
	Dir string `toml:"dir"`
}

type conf struct {
	Window int     `toml:"window"`
	Prompt string  `toml:"prompt"`
	Store  section `toml:"store"`
}

func TestFind(t *testing.T) {
	t.Parallel()
	const text = `# a comment
window = 1
windoww = 2
prompt = """
colour = 3
"""
[store]
  dirr = "/x"
"odd.key" = 1
[stor]
dir = "/y"
[other]
inline = { a = 1 }
`
	var c conf
	md, err := toml.NewDecoder(bytes.NewReader([]byte(text))).Decode(&c)
	if err != nil {
		t.Fatal(err)
	}
	keys := Find([]byte(text), md.Undecoded(), NamesOf(c), nil)
	keys.InFile("x.conf")
	var got []string
	for _, k := range keys {
		got = append(got, k.String())
	}
	want := []string{
		`unknown key "windoww" at x.conf:3:1; did you mean "window"?`,
		`unknown key "store.dirr" at x.conf:8:3; did you mean "dir"?`,
		`unknown key "store.\"odd.key\"" at x.conf:9:1`,
		`unknown key "stor" at x.conf:10:1; did you mean "store"?`,
		`unknown key "other" at x.conf:12:1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Find() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestStrict(t *testing.T) {
	t.Parallel()
	ks := Keys{{Name: "windoww", File: "p.conf", Line: 12, Col: 1, Near: "window"}}
	rest, err := Strict(append(ks.Warnings(), "insecure_http = true"), ks)
	if len(rest) != 1 || rest[0] != "insecure_http = true" {
		t.Errorf("Strict() warnings = %q, want only the other one", rest)
	}
	if want := `unknown key "windoww" at p.conf:12:1; did you mean "window"?`; err == nil || err.Error() != want {
		t.Errorf("Strict() error = %v, want %q", err, want)
	}
	if want := `unknown key "windoww" at p.conf:12:1 ignored; did you mean "window"?`; ks[0].Warning() != want {
		t.Errorf("Warning() = %q, want %q", ks[0].Warning(), want)
	}
	if _, err := Strict([]string{"w"}, nil); err != nil {
		t.Errorf("Strict(no keys) error = %v, want nil", err)
	}
}
