// Package confkey finds the keys of a TOML config file that its reader does not know: where each
// is in the file (line and column) and the valid name nearest to it, so that a typo such as
// `windoww = 2` is reported as "unknown key "windoww" at pam_totp.conf:12:1; did you mean
// "window"?". Both config readers use it, pam_totp.conf's (package config) and the registry's.
//
// The rule it serves: an unknown key is a warning where a config is loaded to work with (a typo
// must not make the login path deny everyone), and an error for --check-config (Strict), so that
// configuration management stops before it rolls a typo out. Values that weaken security are
// errors everywhere; that is the readers' Validate, not this package.
package confkey

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Key is one unknown key.
type Key struct {
	// Name is the key's dotted path ("policy.sshd.windoww").
	Name string
	// File names the file ("" when parsed from memory); Line and Col (from 1) are where the key
	// is written, 0 when it was not found in the text.
	File      string
	Line, Col int
	// Near is the valid name nearest to the key's last part, "" when none is near.
	Near string
}

// where is " at FILE:LINE:COL", " at line LINE:COL" or "".
func (k Key) where() string {
	switch {
	case k.Line == 0 && k.File == "":
		return ""
	case k.Line == 0:
		return " in " + k.File
	case k.File == "":
		return fmt.Sprintf(" at line %d:%d", k.Line, k.Col)
	}
	return fmt.Sprintf(" at %s:%d:%d", k.File, k.Line, k.Col)
}

func (k Key) hint() string {
	if k.Near == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", k.Near)
}

// String is the error's sentence: unknown key "windoww" at pam_totp.conf:12:1; did you mean "window"?
func (k Key) String() string { return fmt.Sprintf("unknown key %q%s%s", k.Name, k.where(), k.hint()) }

// Warning is the sentence of a load that goes on without the key.
func (k Key) Warning() string {
	return fmt.Sprintf("unknown key %q%s ignored%s", k.Name, k.where(), k.hint())
}

// Keys are the unknown keys of one file, in the order of the file.
type Keys []Key

// InFile sets the file name of every key.
func (ks Keys) InFile(file string) {
	for i := range ks {
		ks[i].File = file
	}
}

// Warnings are the keys' warning sentences.
func (ks Keys) Warnings() []string {
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		out = append(out, k.Warning())
	}
	return out
}

// Err is nil without keys, else an error naming each key on a line of its own.
func (ks Keys) Err() error {
	if len(ks) == 0 {
		return nil
	}
	errs := make([]error, 0, len(ks))
	for _, k := range ks {
		errs = append(errs, errors.New(k.String()))
	}
	return errors.Join(errs...)
}

// Strict is what --check-config makes of a load: the warnings other than the unknown keys', and
// the unknown keys as an error.
func Strict(warnings []string, ks Keys) ([]string, error) {
	var rest []string
	for _, w := range warnings {
		if !slices.ContainsFunc(ks, func(k Key) bool { return k.Warning() == w }) {
			rest = append(rest, w)
		}
	}
	return rest, ks.Err()
}

// Names are the valid key names of each table, by the table's dotted path ("" for the top level).
type Names map[string][]string

// NamesOf reads the valid names from the toml tags of v's struct type (fields without a tag go
// by their Go name, lower-cased; "-" is skipped; embedded structs add their fields to the table
// they are in; struct fields that are not time.Time and do not decode themselves are tables).
func NamesOf(v any) Names {
	n := Names{}
	n.add("", reflect.TypeOf(v))
	return n
}

var (
	timeType         = reflect.TypeFor[time.Time]()
	unmarshalerType  = reflect.TypeFor[toml.Unmarshaler]()
	textUnmarshaller = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
)

func (n Names) add(table string, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if _, ok := n[table]; !ok {
		n[table] = []string{}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && tag == "" && ft.Kind() == reflect.Struct {
			n.add(table, ft)
			continue
		}
		name := cmpOr(tag, strings.ToLower(f.Name))
		n[table] = append(n[table], name)
		pt := reflect.PointerTo(ft)
		if ft.Kind() == reflect.Struct && ft != timeType && !pt.Implements(unmarshalerType) && !pt.Implements(textUnmarshaller) {
			n.add(join(table, name), ft)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func join(table, name string) string {
	if table == "" {
		return name
	}
	return table + "." + name
}

// Find makes the Keys of the undecoded keys of a file's text data: a key inside an unknown table
// is left out (the table is reported). table maps a key's parent path to the table whose names
// are valid there (nil: the parent itself), for tables of arbitrary names such as [policy.NAME].
// A file without unknown keys (every login's config) is not scanned again.
func Find(data []byte, undecoded []toml.Key, names Names, table func(parent toml.Key) string) Keys {
	if len(undecoded) == 0 {
		return nil
	}
	pos := positions(data)
	unknown := map[string]bool{}
	var out Keys
	for _, k := range undecoded {
		path := strings.Join(k, "\x00")
		if len(k) > 1 && unknown[strings.Join(k[:len(k)-1], "\x00")] {
			unknown[path] = true
			continue
		}
		unknown[path] = true
		parent := strings.Join(k[:len(k)-1], ".")
		if table != nil {
			parent = table(k[:len(k)-1])
		}
		key := Key{Name: k.String(), Near: Nearest(k[len(k)-1], names[parent])}
		for i := len(k); i > 0 && key.Line == 0; i-- {
			p := pos[strings.Join(k[:i], "\x00")]
			key.Line, key.Col = p[0], p[1]
		}
		out = append(out, key)
	}
	slices.SortStableFunc(out, func(a, b Key) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return out
}

// positions re-scans TOML text for where each table header and key is written: the dotted path
// (parts joined by NUL) to its line and column. It is a scan, not a parser: it skips multi-line
// strings and finds keys at the start of a line, which is where config files write them; a key
// it does not find (inside an inline table, say) is reported at its table's line.
func positions(data []byte) map[string][2]int {
	pos := map[string][2]int{}
	var table []string
	inString := ""
	for i, line := range strings.Split(string(data), "\n") {
		if inString != "" {
			if strings.Count(line, inString)%2 == 1 {
				inString = ""
			}
			continue
		}
		trimmed := strings.TrimLeft(line, " \t")
		col := len(line) - len(trimmed) + 1
		record := func(path []string) {
			k := strings.Join(path, "\x00")
			if _, ok := pos[k]; !ok {
				pos[k] = [2]int{i + 1, col}
			}
		}
		switch {
		case trimmed == "" || trimmed[0] == '#':
			continue
		case trimmed[0] == '[':
			head := strings.TrimLeft(trimmed, "[")
			if end := strings.Index(head, "]"); end >= 0 {
				table = splitKey(head[:end])
				record(table)
			}
			continue
		}
		eq := outsideQuotes(trimmed, '=')
		if eq < 0 {
			continue
		}
		key := splitKey(trimmed[:eq])
		if len(key) == 0 {
			continue
		}
		path := append(slices.Clip(table), key...)
		for j := len(table) + 1; j <= len(path); j++ {
			record(path[:j])
		}
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(trimmed[eq:], q)%2 == 1 {
				inString = q
			}
		}
	}
	return pos
}

// outsideQuotes is the index of the first c in s that is not inside a quoted string, or -1.
func outsideQuotes(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch {
		case quote != 0 && s[i] == '\\' && quote == '"':
			i++
		case quote != 0 && s[i] == quote:
			quote = 0
		case quote != 0:
		case s[i] == '"' || s[i] == '\'':
			quote = s[i]
		case s[i] == c:
			return i
		}
	}
	return -1
}

// splitKey splits a dotted key ("a.\"b.c\".d") into its parts, unquoted.
func splitKey(s string) []string {
	var parts []string
	for {
		s = strings.TrimSpace(s)
		if s == "" {
			return parts
		}
		dot := outsideQuotes(s, '.')
		part := s
		if dot >= 0 {
			part = s[:dot]
		}
		part = strings.TrimSpace(part)
		if len(part) >= 2 && (part[0] == '"' || part[0] == '\'') && part[len(part)-1] == part[0] {
			part = part[1 : len(part)-1]
		}
		parts = append(parts, part)
		if dot < 0 {
			return parts
		}
		s = s[dot+1:]
	}
}

// Nearest returns the candidate nearest to name by edit distance (Levenshtein, ignoring case),
// or "" when none is within a third of name's length (at least 1, at most 3 edits).
func Nearest(name string, candidates []string) string {
	name = strings.ToLower(name)
	best, bestD := "", max(1, min(3, len([]rune(name))/3))+1
	for _, c := range candidates {
		d := distance(name, strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
