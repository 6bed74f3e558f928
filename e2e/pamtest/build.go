//go:build linux

package pamtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/msteinert/pam/v2"
)

// ErrNotBuilt is returned, wrapped, by Build when `make build` succeeded but did not produce
// an output asked for.
var ErrNotBuilt = errors.New("build output missing")

// SkipReason returns why end-to-end tests cannot run here, or "" when they can. whyRoot is the
// reason given when the process is not root: what the package does that needs it.
func SkipReason(whyRoot string) string {
	if os.Geteuid() != 0 {
		return whyRoot
	}
	if !pam.CheckPamHasStartConfdir() {
		return "libpam has no pam_start_confdir (Linux-PAM 1.4 or later needed)"
	}
	return ""
}

// Root returns the repository root: the nearest directory above the working directory (a
// test's package directory) that holds both go.mod and the Makefile.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the repository root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Stat(filepath.Join(d, "go.mod"))
		if err == nil {
			_, err = os.Stat(filepath.Join(d, "Makefile"))
		}
		if err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find the repository root: no go.mod and Makefile above %s", dir)
		}
	}
}

// Build runs `make -C root build build-testclock` (the Makefile is the interface: the same
// build CI runs before the tests) and copies the named outputs, paths below root/build such as
// "pam_totp.so" or "testclock/totp-syncd", into a new root-owned 0755 directory. It returns each
// name's private copy and a function that removes them. The copies keep another package's
// `make`, running at the same time, from swapping a file under a running login, and the
// directories are as pam_totp.so wants its helper's.
func Build(root string, names ...string) (bin map[string]string, cleanup func(), err error) {
	mk := exec.Command("make", "-C", root, "build", "build-testclock")
	if out, err := mk.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("make -C %s build build-testclock: %w\n%s", root, err, out)
	}
	dir, err := os.MkdirTemp("", "pamtotp-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("private copies of the build: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = make(map[string]string, len(names))
	for _, name := range names {
		src := filepath.Join(root, "build", name)
		if _, err := os.Stat(src); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("%w: `make build build-testclock` did not produce %s: %w", ErrNotBuilt, src, err)
		}
		dst := filepath.Join(dir, name)
		err := os.MkdirAll(filepath.Dir(dst), 0o755)
		if err == nil {
			err = os.Chmod(filepath.Dir(dst), 0o755)
		}
		if err == nil {
			err = CopyFile(src, dst, 0o755)
		}
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		bin[name] = dst
	}
	return bin, cleanup, nil
}

// CopyFile copies src to dst and gives dst the mode, whatever the umask.
func CopyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
