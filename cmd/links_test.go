// Package cmd_test checks what each binary links (DESIGN.md, "Layout"): the login helper no
// D-Bus, QR or HTTP code, nothing of the registry and no cobra (it keeps package flag); the
// user's totp CLI no bbolt, no node store or syncer and no HTTP; nothing under pkg/ imports cmd/.
package cmd_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pam-totp/pam-totp/"

// deps lists the packages pkgs link (go list -deps). go test puts its own go first in PATH.
func deps(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func TestBinaryLinks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		binary    string
		forbidden []string // import paths, or prefixes ending in "/"
	}{
		{"pam-totp-helper", []string{"github.com/godbus/", "github.com/mdp/qrterminal/", "rsc.io/qr",
			module + "pkg/qrterm", "net/http", module + "pkg/registry", module + "pkg/registryapi", module + "pkg/adminclient",
			module + "pkg/syncbus", module + "pkg/busapi", module + "pkg/nodesync",
			"github.com/spf13/", module + "pkg/cmdline"}},
		{"totp", []string{"go.etcd.io/bbolt", module + "pkg/store", module + "pkg/nodesync", "net/http",
			module + "pkg/busapi", module + "pkg/registry"}},
	}
	for _, tt := range tests {
		t.Run(tt.binary, func(t *testing.T) {
			t.Parallel()
			for _, d := range deps(t, "./"+tt.binary) {
				for _, f := range tt.forbidden {
					if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
						t.Errorf("%s links %s, want no %s", tt.binary, d, f)
					}
				}
			}
		})
	}
}

func TestPkgImportsNoCmd(t *testing.T) {
	t.Parallel()
	for _, d := range deps(t, "-test", "../pkg/...") {
		if strings.HasPrefix(d, module+"cmd/") {
			t.Errorf("a package under pkg/ links %s, want nothing of cmd/", d)
		}
	}
}
