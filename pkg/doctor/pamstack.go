package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// ModuleName is the file name of the PAM module.
const ModuleName = "pam_totp.so"

// DefaultPAMDir is where PAM service files live.
const DefaultPAMDir = "/etc/pam.d"

// DefaultModuleDirs are where PAM looks for a module given by name (Debian multiarch, RHEL, others).
var DefaultModuleDirs = []string{
	"/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
	"/lib/aarch64-linux-gnu/security", "/usr/lib/aarch64-linux-gnu/security",
	"/usr/lib64/security", "/lib64/security", "/usr/lib/security", "/lib/security",
}

// maxIncludeDepth bounds nested includes; Linux-PAM follows them, so do we, a little way.
const maxIncludeDepth = 8

// PAMLine is one auth line of a service's stack, with includes already inlined.
type PAMLine struct {
	File string
	Num  int
	// Dash is set for "-auth": PAM skips the line silently when the module cannot be loaded.
	Dash    bool
	Control string // as written: "required", "[success=1 default=ignore]", "substack"
	Module  string // module path or name; for substack, the included file
	Args    []string
	// Sub is the stack of a substack line; jumps and done inside it end only the substack.
	Sub []*PAMLine
}

// Where is "file:line".
func (l *PAMLine) Where() string { return fmt.Sprintf("%s:%d", l.File, l.Num) }

// IsTOTP says whether the line loads pam_totp.so.
func (l *PAMLine) IsTOTP() bool {
	return l.Control != "substack" && filepath.Base(l.Module) == ModuleName
}

// Arg returns the value of a key=value module argument.
func (l *PAMLine) Arg(key string) (string, bool) {
	for _, a := range l.Args {
		if v, ok := strings.CutPrefix(a, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Stack is the auth stack of one PAM service.
type Stack struct {
	Service string
	Dir     string
	Lines   []*PAMLine
	// Problems are lines and includes PAM would stumble on, as messages.
	Problems []string
}

// ReadStack reads the auth stack of service from dir (normally /etc/pam.d), inlining @include
// and "auth include" files and nesting "auth substack" files, as Linux-PAM does.
func ReadStack(dir, service string) (*Stack, error) {
	if service == "" || strings.ContainsAny(service, "/") || service == "." || service == ".." {
		return nil, fmt.Errorf("service name %q: must be a plain file name", service)
	}
	s := &Stack{Service: service, Dir: dir}
	lines, err := s.read(filepath.Join(dir, service), 0, map[string]bool{})
	if err != nil {
		return nil, err
	}
	s.Lines = lines
	return s, nil
}

// read returns the auth lines of one file (the only lines "@include" and "auth include" differ
// in are the other types', which are not kept).
func (s *Stack) read(path string, depth int, open map[string]bool) ([]*PAMLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	open[path] = true
	defer delete(open, path)
	var out []*PAMLine
	for _, ll := range logicalLines(string(data)) {
		tok := tokens(ll.text)
		if len(tok) == 0 {
			continue
		}
		if tok[0] == "@include" {
			if len(tok) != 2 {
				s.problem("%s:%d: @include needs exactly one file name", path, ll.num)
				continue
			}
			out = append(out, s.include(path, ll.num, tok[1], depth, open)...)
			continue
		}
		typ := strings.ToLower(tok[0])
		dash := strings.HasPrefix(typ, "-")
		typ = strings.TrimPrefix(typ, "-")
		if typ != "auth" {
			if typ != "account" && typ != "session" && typ != "password" {
				s.problem("%s:%d: unknown type %q", path, ll.num, token.Clean(tok[0]))
			}
			continue
		}
		if len(tok) < 3 {
			s.problem("%s:%d: want type, control and module", path, ll.num)
			continue
		}
		line := &PAMLine{File: path, Num: ll.num, Dash: dash, Control: tok[1], Module: tok[2], Args: tok[3:]}
		switch ctl := strings.ToLower(tok[1]); ctl {
		case "include":
			out = append(out, s.include(path, ll.num, tok[2], depth, open)...)
			continue
		case "substack":
			line.Control = ctl
			line.Sub = s.include(path, ll.num, tok[2], depth, open)
		case "required", "requisite", "sufficient", "optional":
			line.Control = ctl
		default:
			if _, err := parseActions(tok[1]); err != nil {
				s.problem("%s:%d: control %q: %v", path, ll.num, token.Clean(tok[1]), err)
			}
		}
		out = append(out, line)
	}
	return out, nil
}

func (s *Stack) include(from string, num int, name string, depth int, open map[string]bool) []*PAMLine {
	path := name
	if !filepath.IsAbs(name) {
		path = filepath.Join(s.Dir, name)
	}
	switch {
	case depth+1 > maxIncludeDepth:
		s.problem("%s:%d: includes nested more than %d deep; %s not read", from, num, maxIncludeDepth, token.Clean(name))
		return nil
	case open[path]:
		s.problem("%s:%d: %s includes itself", from, num, token.Clean(name))
		return nil
	}
	lines, err := s.read(path, depth+1, open)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.problem("%s:%d: included file %s does not exist (PAM fails the whole stack)", from, num, token.Clean(path))
		} else {
			s.problem("%s:%d: %v", from, num, err)
		}
		return nil
	}
	return lines
}

func (s *Stack) problem(format string, args ...any) {
	s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
}

type logicalLine struct {
	num  int // line number where it starts
	text string
}

// logicalLines joins backslash-continued lines and drops comments ('#' to the end of the line).
func logicalLines(data string) []logicalLine {
	var out []logicalLine
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(data, "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		if cur.Len() == 0 {
			start = i + 1
		}
		if j := strings.IndexByte(raw, '#'); j >= 0 {
			raw = raw[:j]
		}
		if strings.HasSuffix(raw, "\\") {
			cur.WriteString(strings.TrimSuffix(raw, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(raw)
		if t := strings.TrimSpace(cur.String()); t != "" {
			out = append(out, logicalLine{num: start, text: t})
		}
		cur.Reset()
	}
	if t := strings.TrimSpace(cur.String()); t != "" {
		out = append(out, logicalLine{num: start, text: t})
	}
	return out
}

// tokens splits a line on blanks, keeping "[...]" (with "\]" inside) as one token, as PAM does
// for controls and module arguments. The brackets of an argument are removed; a control keeps
// them so that it reads as written.
func tokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		if s[i] == '[' {
			var b strings.Builder
			j := i + 1
			for j < len(s) && s[j] != ']' {
				if s[j] == '\\' && j+1 < len(s) && s[j+1] == ']' {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			if len(out) == 1 {
				out = append(out, "["+b.String()+"]") // the control
			} else {
				out = append(out, b.String())
			}
			i = j + 1
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		out = append(out, s[i:j])
		i = j
	}
	return out
}

// pamValues are the return values a control may name, as in pam.conf(5).
var pamValues = map[string]bool{
	"success": true, "open_err": true, "symbol_err": true, "service_err": true, "system_err": true,
	"buf_err": true, "perm_denied": true, "auth_err": true, "cred_insufficient": true,
	"authinfo_unavail": true, "user_unknown": true, "maxtries": true, "new_authtok_reqd": true,
	"acct_expired": true, "session_err": true, "cred_unavail": true, "cred_expired": true,
	"cred_err": true, "no_module_data": true, "conv_err": true, "authtok_err": true,
	"authtok_recover_err": true, "authtok_lock_busy": true, "authtok_disable_aging": true,
	"try_again": true, "ignore": true, "abort": true, "authtok_expired": true,
	"module_unknown": true, "bad_item": true, "conv_again": true, "incomplete": true, "default": true,
}

// parseActions parses "[value=action ...]" into a map.
func parseActions(ctl string) (map[string]string, error) {
	inner, ok := strings.CutPrefix(ctl, "[")
	if !ok {
		return nil, errors.New("not a keyword or [value=action ...]")
	}
	inner = strings.TrimSuffix(inner, "]")
	m := map[string]string{}
	for _, f := range strings.Fields(inner) {
		v, act, ok := strings.Cut(f, "=")
		v, act = strings.ToLower(v), strings.ToLower(act)
		if !ok || !pamValues[v] {
			return nil, fmt.Errorf("%q is not value=action", token.Clean(f))
		}
		switch act {
		case "ignore", "bad", "die", "ok", "done", "reset":
		default:
			if n, err := strconv.Atoi(act); err != nil || n < 1 {
				return nil, fmt.Errorf("%q: action must be ignore, bad, die, ok, done, reset or a jump", token.Clean(f))
			}
		}
		m[v] = act
	}
	return m, nil
}

// simpleControls are the keyword controls written as actions (pam.conf(5)).
var simpleControls = map[string]string{
	"required":   "[success=ok new_authtok_reqd=ok ignore=ignore default=bad]",
	"requisite":  "[success=ok new_authtok_reqd=ok ignore=ignore default=die]",
	"sufficient": "[success=done new_authtok_reqd=done default=ignore]",
	"optional":   "[success=ok new_authtok_reqd=ok default=ignore]",
}

// action returns what a line does when its module returns value ("bad" for a control PAM
// cannot parse, "substack" for a substack line).
func (l *PAMLine) action(value string) string {
	if l.Control == "substack" {
		return "substack"
	}
	ctl := l.Control
	if s, ok := simpleControls[ctl]; ok {
		ctl = s
	}
	m, err := parseActions(ctl)
	if err != nil {
		return "bad"
	}
	if a, ok := m[value]; ok {
		return a
	}
	if a, ok := m["default"]; ok {
		return a
	}
	return "bad"
}
