//go:build linux

package install

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

// dirs are the make variables of the staged install: every one away from its default.
var dirs = []string{
	"PREFIX=/usr/local",
	"SYSCONFDIR=/usr/local/etc",
	"LOCALSTATEDIR=/usr/local/var",
	"RUNDIR=/usr/local/var/run",
	"PAMDIR=/usr/local/lib/security",
	"UNITDIR=/usr/local/lib/systemd/system",
}

// The paths the staged install must name.
const (
	confDir   = "/usr/local/etc/pam-totp"
	stateDir  = "/usr/local/var/lib/pam-totp"
	regState  = "/usr/local/var/lib/pam-totp-registry"
	socket    = "/usr/local/var/run/pam-totp/verify.sock"
	helper    = "/usr/local/libexec/pam-totp/pam-totp-helper"
	sbin      = "/usr/local/sbin"
	bin       = "/usr/local/bin"
	manDir    = "/usr/local/share/man"
	complDir  = "/usr/local/share/bash-completion/completions"
	nodeConf  = confDir + "/pam_totp.conf"
	unitDir   = "/usr/local/lib/systemd/system"
	dbusDir   = "/usr/local/share/dbus-1/system.d"
	moduleDir = "/usr/local/lib/security"
)

// destdir is the staged root, made once by TestMain.
var destdir string

func TestMain(m *testing.M) {
	code, err := stage(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func stage(m *testing.M) (int, error) {
	root, err := pamtest.Root()
	if err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp("", "pamtotp-install-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	destdir = filepath.Join(tmp, "root")
	// A build directory of its own: build/ keeps the binaries of the default paths.
	args := append([]string{"-C", root, "install", "DESTDIR=" + destdir, "BUILD=" + filepath.Join(tmp, "build")}, dirs...)
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("make %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return m.Run(), nil
}

// staged is the path of an installed file below destdir.
func staged(path string) string { return filepath.Join(destdir, path) }

// run runs an installed binary and returns what it printed on both outputs; its exit status
// does not matter here.
func run(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(staged(path), args...).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("%s %q: %v", path, args, err)
	}
	return string(out)
}

// Each binary's defaults are the directories asked for.
func TestBinaryDefaults(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	empty, minimal := filepath.Join(work, "registry.conf"), filepath.Join(work, "pam_totp.conf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(minimal, []byte("mode = \"enforce\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		args []string
		want string
	}{
		{"totp-admin --config", bin + "/totp-admin", []string{"--help"}, `--config FILE                 config FILE of this node (default "` + nodeConf + `")`},
		{"totp-admin's help text", bin + "/totp-admin", []string{"--help"}, "(--config FILE, default " + nodeConf + ")"},
		{"totp-admin doctor --helper", bin + "/totp-admin", []string{"doctor", "--help"}, `(default "` + helper + `")`},
		{"node store", bin + "/totp-admin", []string{"--config", minimal, "token", "list"}, "lstat " + stateDir + ":"},
		{"totp-syncd --config", sbin + "/totp-syncd", []string{"--help"}, `(default "` + nodeConf + `")`},
		{"totp-registry --config", sbin + "/totp-registry", []string{"--help"}, `(default "` + confDir + `/registry.conf")`},
		{"registry keyring", sbin + "/totp-registry", []string{"--check-config", "--config", empty}, confDir + "/registry.keyring"},
		{"pam-totp-helper --config", "/usr/local/libexec/pam-totp/pam-totp-helper", []string{"-h"}, `(default "` + nodeConf + `")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if out := run(t, tt.path, tt.args...); !strings.Contains(out, tt.want) {
				t.Errorf("%s %q printed\n%s\nwant it to contain %q", tt.path, tt.args, out, tt.want)
			}
		})
	}
}

// pam_totp.so has the paths compiled in (-D from the same make variables).
func TestModulePaths(t *testing.T) {
	t.Parallel()
	so, err := os.ReadFile(staged(moduleDir + "/pam_totp.so"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{helper, nodeConf, socket} {
		if !bytes.Contains(so, []byte("\x00"+p+"\x00")) {
			t.Errorf("pam_totp.so has no string %q", p)
		}
	}
}

// The units, the config and the D-Bus policy are installed with the directories asked for, and the
// state directories exist, root's alone.
func TestInstalledFiles(t *testing.T) {
	t.Parallel()
	for file, wants := range map[string][]string{
		unitDir + "/totp-syncd.service": {
			"\nExecStart=" + sbin + "/totp-syncd --config " + nodeConf + "\n",
			"\nConditionPathExists=" + nodeConf + "\n",
			"\nReadWritePaths=" + stateDir + "\n",
		},
		unitDir + "/totp-registry.service": {
			"\nExecStart=" + sbin + "/totp-registry --config " + confDir + "/registry.conf\n",
			"\nExecStartPre=" + sbin + "/totp-registry --config " + confDir + "/registry.conf --check-config\n",
			// systemd's StateDirectory= is always below /var/lib: the unit names the store's directory.
			"\nReadWritePaths=" + regState + "\n",
		},
		nodeConf: {
			"\ndir = \"" + stateDir + "\"\n",
			"\nca_file = \"" + confDir + "/registry-ca.pem\"\n",
			"\ncredential_file = \"" + confDir + "/node.credential\"\n",
			"\nverify_socket = \"" + socket + "\"\n",
		},
		dbusDir + "/io.github.pamtotp.Sync1.conf": {`<allow own="io.github.pamtotp.Sync1"/>`},
	} {
		b, err := os.ReadFile(staged(file))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, want := range wants {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s has no %q", file, want)
			}
		}
		if strings.Contains(string(b), "StateDirectory") {
			t.Errorf("%s names systemd's StateDirectory (below /var/lib), not the LOCALSTATEDIR asked for", file)
		}
	}
	for _, dir := range []string{stateDir, regState} {
		if fi, err := os.Stat(staged(dir)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a directory of mode 0700", dir, fi, err)
		}
	}
}

// defaults are the default paths that must not be left in a staged install that asked for others.
var defaults = []string{"/usr/bin/", "/usr/sbin/", "/usr/libexec", "/usr/share/dbus-1", "/etc/pam-totp", "/var/lib/pam-totp", "/run/pam-totp", "/lib/systemd"}

// Nothing installed still names a default path: no text file, and not pam_totp.so, whose paths
// are string constants. The Go binaries are checked by what they do (TestBinaryDefaults): their
// paths are joined at run time, and the linker may keep pkg/paths' default strings unused in them.
func TestNoDefaultPathLeft(t *testing.T) {
	t.Parallel()
	// The paths asked for contain some defaults ("/usr/local/etc/pam-totp"): cut them out first.
	asked := strings.NewReplacer(confDir, "", stateDir, "", "/usr/local/var/run/pam-totp", "", "/usr/local/libexec", "",
		sbin+"/", "", bin+"/", "", dbusDir, "", unitDir, "")
	var files int
	err := filepath.WalkDir(destdir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil || bytes.HasPrefix(b, []byte("\x7fELF")) && d.Name() != "pam_totp.so" {
			return err
		}
		rest := asked.Replace(string(b))
		for _, p := range defaults {
			if i := strings.Index(rest, p); i >= 0 {
				t.Errorf("%s names %s: %q", strings.TrimPrefix(path, destdir), p, rest[max(0, i-40):min(len(rest), i+60)])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("the staged install has %d files; want the module, the binaries, the units, the config and the pages", files)
	}
}

// man finds the pages by name once MANPATH names the installed man directory: `man pam_totp` works
// after make install.
func TestManFindsPages(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("man"); err != nil {
		t.Fatal("no man (man-db, make deps): ", err)
	}
	for _, page := range [][]string{
		{"pam_totp"}, {"5", "pam_totp.conf"}, {"pam-totp-helper"}, {"5", "totp-registry.conf"},
		{"totp-admin"}, {"totp-admin-token-add"}, {"totp"}, {"totp-syncd"}, {"totp-registry"},
	} {
		cmd := exec.Command("man", append([]string{"-w"}, page...)...)
		cmd.Env = append(os.Environ(), "MANPATH="+staged(manDir))
		out, err := cmd.Output()
		if got := strings.TrimSpace(string(out)); err != nil || !strings.HasPrefix(got, staged(manDir)+"/") {
			t.Errorf("MANPATH=%s man -w %s = %q, %v; want a page below the staged MANDIR", staged(manDir), strings.Join(page, " "), got, err)
		}
	}
}

// helpSection lists the first word of each line of a section of a cobra --help ("Available
// Commands:").
func helpSection(help, title string) []string {
	var words []string
	for _, line := range helpSectionLines(help, title) {
		if f := strings.Fields(line); len(f) > 0 {
			words = append(words, f[0])
		}
	}
	return words
}

// Every command a binary's --help lists (down the tree) has its page, and the page of the
// command above names it.
func TestManPagesListEveryCommand(t *testing.T) {
	t.Parallel()
	for _, b := range []struct{ path, section string }{
		{bin + "/totp", "1"}, {bin + "/totp-admin", "8"}, {sbin + "/totp-syncd", "8"}, {sbin + "/totp-registry", "8"},
	} {
		var walk func(words []string)
		walk = func(words []string) {
			name := strings.Join(words, "-")
			page, err := os.ReadFile(staged(filepath.Join(manDir, "man"+b.section, name+"."+b.section)))
			if err != nil {
				t.Errorf("%s --help: %v", strings.Join(words, " "), err)
				return
			}
			args := append(append([]string{}, words[1:]...), "--help")
			cmds := helpSection(run(t, b.path, args...), "Available Commands:")
			for _, c := range cmds {
				if c == "help" { // cobra's help verb has no page: every page says how to get help
					continue
				}
				if ref := `\fB` + name + "-" + c + "(" + b.section + `)\fP`; !strings.Contains(string(page), ref) {
					t.Errorf("%s(%s) does not name %s, which `%s --help` lists", name, b.section, ref, strings.Join(words, " "))
				}
				walk(append(words, c))
			}
			if len(words) == 1 && len(cmds) < 3 {
				t.Errorf("%s --help lists commands %q; want its whole tree", name, cmds)
			}
		}
		walk([]string{filepath.Base(b.path)})
	}
}

var flagRE = regexp.MustCompile(`--[a-z][a-z-]*`)

// The installed completions of totp and totp-admin complete every command and every flag their
// --help lists, in a real bash with bash-completion, calling the installed binaries back.
func TestCompletion(t *testing.T) {
	t.Parallel()
	path := staged(bin)
	for _, tt := range []struct{ line, want string }{
		{"totp-admin tok", "token"},
		{"totp-admin token ", "add assign disable enable list remove unassign"},
		{"totp-admin import ", "csv google-authenticator pskc"},
		{"totp en", "enroll"},
		{"totp-admin token add --no-", "--no-qr --no-verify"},
	} {
		script := staged(filepath.Join(complDir, strings.Fields(tt.line)[0]))
		if got := cmdlinetest.Complete(t, script, path, nil, tt.line); got != tt.want {
			t.Errorf("completion of %q = %q, want %q", tt.line, got, tt.want)
		}
	}
	for _, words := range [][]string{{"totp"}, {"totp-admin"}, {"totp", "enroll"}, {"totp-admin", "token", "add"}} {
		script := staged(filepath.Join(complDir, words[0]))
		help := run(t, filepath.Join(bin, words[0]), append(append([]string{}, words[1:]...), "--help")...)
		line := strings.Join(words, " ") + " "
		if cmds := helpSection(help, "Available Commands:"); len(cmds) > 0 {
			sort.Strings(cmds)
			if got, want := cmdlinetest.Complete(t, script, path, nil, line), strings.Join(cmds, " "); got != want {
				t.Errorf("completion of %q = %q, want the commands of --help, %q", line, got, want)
			}
		}
		var flags []string
		for _, title := range []string{"Flags:", "Global Flags:"} {
			for _, l := range helpSectionLines(help, title) {
				if f := flagRE.FindString(l); f != "" {
					flags = append(flags, f)
				}
			}
		}
		if len(flags) == 0 {
			t.Errorf("%s --help lists no flags", line)
		}
		got := " " + cmdlinetest.Complete(t, script, path, nil, line+"--") + " "
		for _, f := range flags {
			if !strings.Contains(got, " "+f+" ") && !strings.Contains(got, " "+f+"=") {
				t.Errorf("completion of %q = %q, without %s, which --help lists", line+"--", got, f)
			}
		}
	}
}

// helpSectionLines is the lines of a section of a cobra --help.
func helpSectionLines(help, title string) []string {
	_, rest, ok := strings.Cut(help, "\n"+title+"\n")
	if !ok {
		return nil
	}
	rest, _, _ = strings.Cut(rest, "\n\n")
	return strings.Split(rest, "\n")
}

// The default `make install` keeps the layout the packages ship (make -n: nothing is built).
func TestDefaultLayout(t *testing.T) {
	t.Parallel()
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-n", "-C", root, "install", "DESTDIR=/D").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n install: %v\n%s", err, out)
	}
	for _, want := range []string{
		"/security/pam_totp.so", " /D/usr/libexec/pam-totp/pam-totp-helper", " /D/usr/bin/totp-admin", " /D/usr/bin/totp",
		" /D/usr/sbin/totp-registry", " /D/usr/sbin/totp-syncd", " /D/etc/pam-totp/pam_totp.conf", " /D/var/lib/pam-totp",
		" /D/lib/systemd/system/", " /D/usr/share/dbus-1/system.d/", " /D/usr/share/bash-completion/completions",
		" /D/usr/share/man/man8", " /D/usr/share/man/man5", " /D/usr/share/man/man1",
		"pkg/paths.SysconfDir=/etc ", "pkg/paths.LocalstateDir=/var ", "pkg/paths.RunDir=/run", "pkg/paths.LibexecDir=/usr/libexec ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make -n install DESTDIR=/D has no %q", want)
		}
	}
	if strings.Contains(string(out), "/D/var/lib/pam-totp-registry") {
		t.Error("make install with LOCALSTATEDIR=/var creates the registry's directory, which systemd's StateDirectory makes")
	}
}

// keyRE matches a key of a TOML example, set or commented out ("# grace_until = ..."), and
// sectionRE a section header, also commented out ("# [policy.sshd]").
var (
	keyRE     = regexp.MustCompile(`(?m)^#?\s*([a-z][a-z_]*) = `)
	sectionRE = regexp.MustCompile(`(?m)^#?\s*\[([a-z][a-z_.]*)\]\s*$`)
)

// The config pages name every key and section of the examples that document them, commented-out
// ones too, in bold as the pages' definition lists do.
func TestManPagesNameEveryKey(t *testing.T) {
	t.Parallel()
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	for example, page := range map[string]string{
		"pam_totp.conf.example":         manDir + "/man5/pam_totp.conf.5",
		"contrib/registry.conf.example": manDir + "/man5/totp-registry.conf.5",
	} {
		ex, err := os.ReadFile(filepath.Join(root, example))
		if err != nil {
			t.Fatal(err)
		}
		roff, err := os.ReadFile(staged(page))
		if err != nil {
			t.Fatal(err)
		}
		keys := keyRE.FindAllStringSubmatch(string(ex), -1)
		if len(keys) < 20 {
			t.Fatalf("%s: found %d keys; the pattern no longer matches the example", example, len(keys))
		}
		for _, k := range keys {
			if !strings.Contains(string(roff), `\fB`+k[1]+`\fP`) {
				t.Errorf("%s does not describe %s's key %s", filepath.Base(page), example, k[1])
			}
		}
		for _, s := range sectionRE.FindAllStringSubmatch(string(ex), -1) {
			if !strings.Contains(string(roff), "["+s[1]+"]") {
				t.Errorf("%s does not name %s's section [%s]", filepath.Base(page), example, s[1])
			}
		}
	}
}

// Every installed page renders without a warning from groff, as lintian checks them
// (manpage-has-errors-from-man).
func TestManPagesRenderClean(t *testing.T) {
	t.Parallel()
	pages, err := filepath.Glob(staged(manDir + "/man[158]/*"))
	if err != nil || len(pages) < 10 {
		t.Fatalf("installed pages %q, %v; want every binary's and the markdown pages", pages, err)
	}
	for _, page := range pages {
		cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man --warnings -l %s: %v\n%s", strings.TrimPrefix(page, destdir), err, stderr.String())
		}
	}
}
