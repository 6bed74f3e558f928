package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/cmdline/cmdlinetest"
)

func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	// The standalone daemon creates its store at start: a directory of its own.
	// verify_socket = "none": a standalone daemon without the bus and without the verifier has
	// nothing to do (and the tests never touch /run/pam-totp).
	standalone := write("standalone.conf", "[store]\ndir = \""+filepath.Join(dir, "standalone")+"\"\n[sync]\nverify_socket = \"none\"\n", 0o644)
	cred := write("node.credential", "ptn1.n.secret\n", 0o600)
	synced := write("synced.conf", "[store]\ndir = \""+dir+"\"\n[sync]\nregistry = \"http://127.0.0.1:1\"\n"+
		"ca_file = \""+dir+"/ca.pem\"\ncredential_file = \""+cred+"\"\n", 0o644)
	typo := write("typo.conf", "[store]\ndir = \""+dir+"\"\n[sync]\nregistry = \"http://127.0.0.1:1\"\n"+
		"ca_file = \""+dir+"/ca.pem\"\ncredential_file = \""+cred+"\"\nmax_ofline = \"1h\"\n", 0o644)
	missingCred := write("nocred.conf", "[sync]\nregistry = \"http://127.0.0.1:1\"\ncredential_file = \""+dir+"/nope\"\n", 0o644)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{name: "version", args: []string{"--version"}, wantOut: "totp-syncd "},
		{name: "standalone check-config", args: []string{"--check-config", "--config", standalone}, wantOut: "standalone"},
		{name: "standalone without a bus", args: []string{"--config", standalone, "--bus", "unix:path=" + dir + "/no-bus"},
			wantCode: 1, wantStderr: "no D-Bus service and no resident verifier: a standalone totp-syncd has nothing else to do"},
		{name: "check-config", args: []string{"--check-config", "--config", synced}, wantOut: "OK"},
		{name: "check-config with a typo", args: []string{"--check-config", "--config", typo}, wantCode: exitConfig,
			wantStderr: `error: unknown key "sync.max_ofline" at ` + typo + `:7:1; did you mean "max_offline"?`},
		{name: "check-config without credential", args: []string{"--check-config", "--config", missingCred}, wantCode: 1, wantStderr: "credential_file"},
		{name: "status before the first sync", args: []string{"status", "--config", synced}, wantCode: 1, wantStderr: "never synced"},
		{name: "bad flag", args: []string{"--nope"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantStderr) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errOut.String(),
					tt.wantCode, tt.wantOut, tt.wantStderr)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	cmdlinetest.Run(t, run, append(cmdlinetest.Common("totp-syncd"),
		cmdlinetest.Case{Name: "status --help", Args: []string{"status", "--help"}, Stdout: "Usage:\n  totp-syncd status"},
		cmdlinetest.Case{Name: "status with an argument", Args: []string{"status", "x"}, Code: 2,
			Stderr: "totp-syncd: status: wrong number of arguments\nusage: totp-syncd status"},
		cmdlinetest.Case{Name: "status bad flag", Args: []string{"status", "--debug"}, Code: 2,
			Stderr: "totp-syncd: status: flag provided but not defined: --debug"},
		cmdlinetest.Case{Name: "config error is EX_CONFIG", Args: []string{"--config", "/nonexistent/pam_totp.conf"}, Code: 78,
			Stderr: "error: "},
	))
}
