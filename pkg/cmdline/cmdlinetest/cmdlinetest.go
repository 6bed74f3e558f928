// Package cmdlinetest checks a binary's command line against the rules of package cmdline, in
// process: the cases every binary shares and the binary's own.
package cmdlinetest

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Case is one command line and what it must do: exit with Code, with Stdout and Stderr among
// what it printed there (Stdout "" also wants nothing on standard output after a usage error).
type Case struct {
	Name           string
	Args           []string
	Code           int
	Stdout, Stderr string
}

// Common are the cases every binary passes: help with --help, -h and the help verb, an unknown
// verb and a bad flag.
func Common(binary string) []Case {
	usage := "Usage:\n  " + binary + " "
	return []Case{
		{Name: "--help", Args: []string{"--help"}, Stdout: usage},
		{Name: "-h", Args: []string{"-h"}, Stdout: usage},
		{Name: "help verb", Args: []string{"help"}, Stdout: usage},
		{Name: "help of help", Args: []string{"help", "help"}, Stdout: "Usage:\n  " + binary + " help"},
		{Name: "help of an unknown verb", Args: []string{"help", "frob"}, Code: 2, Stderr: binary + `: help: unknown command "frob"` + "\nusage: "},
		{Name: "unknown verb", Args: []string{"frob"}, Code: 2, Stderr: binary + `: unknown command "frob"` + "\nusage: " + binary},
		{Name: "bad flag", Args: []string{"--frob"}, Code: 2, Stderr: binary + ": flag provided but not defined: --frob\nusage: "},
		{Name: "single-dash long flag", Args: []string{"-config", "x"}, Code: 2, Stderr: "long flags take two dashes: --config"},
		{Name: "version", Args: []string{"--version"}, Stdout: binary + " "},
	}
}

// Run runs each case through run (the binary's command line, in process) and checks it.
func Run(t *testing.T, run func(args []string, stdout, stderr io.Writer) int, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(c.Args, &out, &errb)
			ok := code == c.Code && strings.Contains(out.String(), c.Stdout) && strings.Contains(errb.String(), c.Stderr)
			if c.Code == 2 && out.Len() > 0 || c.Code == 0 && c.Stdout != "" && errb.Len() > 0 {
				ok = false
			}
			if !ok {
				t.Errorf("%q = exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					c.Args, code, out.String(), errb.String(), c.Code, c.Stdout, c.Stderr)
			}
		})
	}
}

// BashCompletionFramework is Debian's bash-completion (make deps), which completion scripts
// expect loaded.
const BashCompletionFramework = "/usr/share/bash-completion/bash_completion"

// Complete asks a real bash for the completions of line, a command line typed so far (ending in a
// space to complete a new word), with the completion script at script loaded as bash-completion
// loads it; the program (line's first word) is called back for its candidates, found on path
// (prepended to $PATH) with env added. It returns the candidates, sorted, separated by spaces.
func Complete(t testing.TB, script, path string, env []string, line string) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("no bash: ", err)
	}
	if _, err := os.Stat(BashCompletionFramework); err != nil {
		t.Fatal(err)
	}
	prog, _, _ := strings.Cut(line, " ")
	sh := `source ` + BashCompletionFramework + ` && source "$2" || exit 3
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -r -a COMP_WORDS <<< "$1"
[[ "$1" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
__start_` + prog + ` ` + prog + `
printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '`
	cmd := exec.Command(bash, "--norc", "-c", sh, "bash", line, script)
	cmd.Env = append(append(os.Environ(), "PATH="+path+":"+os.Getenv("PATH")), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr // outside a real completion, bash-completion's compopt complains here
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", line, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
