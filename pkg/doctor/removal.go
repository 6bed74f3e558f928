package doctor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// DefaultProfile is the pam-auth-update profile the Debian package ships. While it exists,
// pam-auth-update owns the pam_totp.so lines inside its block of the common-* files.
const DefaultProfile = "/usr/share/pam-configs/pam-totp"

// The comments pam-auth-update writes around the block it generates in /etc/pam.d/common-*.
const (
	pamAuthUpdateBegin = "# here are the per-package modules"
	pamAuthUpdateEnd   = "# end of pam-auth-update config"
)

// RemovalLine is a line of a PAM file that loads pam_totp.so.
type RemovalLine struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Text string `json:"text"`
	// Managed: inside pam-auth-update's block of a common-* file while the profile exists, so
	// `pam-auth-update --package --remove pam-totp` takes it away.
	Managed bool `json:"managed"`
}

// Removal says whether the package may be removed without locking the site out: removing
// pam_totp.so while a PAM file still names it denies every login through that file.
type Removal struct {
	PAMDir  string        `json:"pam_dir"`
	Profile bool          `json:"profile"` // the pam-auth-update profile exists (and Strict is off)
	Lines   []RemovalLine `json:"lines"`
}

// RemovalOptions say where to look.
type RemovalOptions struct {
	PAMDir  string // DefaultPAMDir
	Profile string // DefaultProfile
	// Strict counts the lines in pam-auth-update's block as by hand too: after
	// `pam-auth-update --package --remove pam-totp` none may remain (pam-auth-update leaves
	// common-* files with local changes alone).
	Strict bool
}

// CheckRemoval reads every file of o.PAMDir (a directory that does not exist has no lines) and
// returns each line that loads pam_totp.so, whatever its type, '-' prefix or module path.
func CheckRemoval(o RemovalOptions) (*Removal, error) {
	r := &Removal{PAMDir: o.PAMDir, Lines: []RemovalLine{}}
	if !o.Strict {
		if _, err := os.Stat(o.Profile); err == nil {
			r.Profile = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pam-auth-update profile: %w", err)
		}
	}
	entries, err := os.ReadDir(o.PAMDir)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read PAM directory: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		path := filepath.Join(o.PAMDir, e.Name())
		fi, err := os.Stat(path) // a symlink counts as the file it names, as for PAM
		if err != nil {
			return nil, fmt.Errorf("PAM file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("PAM file: %w", err)
		}
		r.Lines = append(r.Lines, totpLines(path, string(data), r.Profile && strings.HasPrefix(e.Name(), "common-"))...)
	}
	return r, nil
}

// totpLines returns the lines of one file that load pam_totp.so; with managed, those inside
// pam-auth-update's block are marked Managed.
func totpLines(path, data string, managed bool) []RemovalLine {
	// inBlock[n] says whether line n (1-based) lies inside pam-auth-update's block.
	raw := strings.Split(data, "\n")
	inBlock := make([]bool, len(raw)+2)
	in := false
	for i, l := range raw {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, pamAuthUpdateBegin):
			in = true
		case strings.HasPrefix(l, pamAuthUpdateEnd):
			in = false
		}
		inBlock[i+1] = in
	}
	var out []RemovalLine
	for _, ll := range logicalLines(data) {
		tok := tokens(ll.text)
		if len(tok) < 3 || tok[0] == "@include" {
			continue
		}
		switch strings.ToLower(strings.TrimPrefix(tok[0], "-")) {
		case "auth", "account", "session", "password":
		default:
			continue
		}
		if filepath.Base(tok[2]) != ModuleName {
			continue
		}
		out = append(out, RemovalLine{File: path, Line: ll.num, Text: token.Clean(strings.Join(strings.Fields(ll.text), " ")),
			Managed: managed && inBlock[ll.num]})
	}
	return out
}

// ByHand are the lines no package tool takes away.
func (r *Removal) ByHand() []RemovalLine {
	var out []RemovalLine
	for _, l := range r.Lines {
		if !l.Managed {
			out = append(out, l)
		}
	}
	return out
}

// Safe says whether the package may be removed: no line names pam_totp.so by hand.
func (r *Removal) Safe() bool { return len(r.ByHand()) == 0 }

// Write says it for a person: one line when safe, else each line by hand and what to do.
func (r *Removal) Write(w io.Writer) error {
	var b strings.Builder
	hand := r.ByHand()
	if len(hand) == 0 {
		managed := ""
		if n := len(r.Lines); n > 0 {
			managed = fmt.Sprintf(" (%d in pam-auth-update's block, which `pam-auth-update --package --remove pam-totp` takes away)", n)
		}
		fmt.Fprintf(&b, "OK: no file in %s names %s by hand%s; the package may be removed.\n",
			token.Clean(r.PAMDir), ModuleName, managed)
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, l := range hand {
		fmt.Fprintf(&b, "%s:%d: %s\n", token.Clean(l.File), l.Line, l.Text)
	}
	fmt.Fprintf(&b, "These lines name %s by hand: once the package is removed, every login through them is denied.\n"+
		"Before removing the package, remove these lines or comment them out. With pam-auth-update:\n"+
		"`pam-auth-update --disable pam-totp`; on RHEL: take %s out of your authselect profile and run\n"+
		"`authselect apply-changes`. Then check again with `totp-admin check-removal`.\n", ModuleName, ModuleName)
	_, err := io.WriteString(w, b.String())
	return err
}
