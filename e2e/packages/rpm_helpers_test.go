//go:build packaging

package packages

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// rpmDirEnv names a directory that holds already built RPMs (pam-totp, pam-totp-registry and the
// SRPM, at any depth, as build/rpm after `make rpm`); without it the tests run `make rpm` once.
const rpmDirEnv = "PAM_TOTP_RPM_DIR"

// rpmSet is the output of one `make rpm`.
type rpmSet struct {
	root     string // the repository
	main     string // pam-totp-VERSION.ARCH.rpm
	registry string // pam-totp-registry-VERSION.ARCH.rpm
	srpm     string // pam-totp-VERSION.src.rpm
}

var (
	rpmOnce  sync.Once
	rpmBuilt rpmSet
	rpmErr   error
)

// rpms returns the RPMs to check, building them with `make rpm` on first use.
func rpms(t *testing.T) rpmSet {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild", "rpm2cpio", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (contrib/scripts/deps.sh installs it): %v", tool, err)
		}
	}
	rpmOnce.Do(func() { rpmBuilt, rpmErr = findOrBuildRPMs() })
	if rpmErr != nil {
		t.Fatal(rpmErr)
	}
	return rpmBuilt
}

func findOrBuildRPMs() (rpmSet, error) {
	root, err := pamtest.Root()
	if err != nil {
		return rpmSet{}, err
	}
	dir := os.Getenv(rpmDirEnv)
	if dir == "" {
		cmd := exec.Command("make", "rpm")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return rpmSet{}, fmt.Errorf("make rpm: %w\n%s", err, out)
		}
		dir = filepath.Join(root, "build", "rpm")
	}
	s := rpmSet{root: root}
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".src.rpm"):
			s.srpm = path
		case strings.HasPrefix(name, "pam-totp-registry-") && strings.HasSuffix(name, ".rpm"):
			s.registry = path
		case strings.HasPrefix(name, "pam-totp-") && strings.HasSuffix(name, ".rpm"):
			s.main = path
		}
		return nil
	})
	if err != nil {
		return rpmSet{}, fmt.Errorf("find the RPMs in %s: %w", dir, err)
	}
	if s.main == "" || s.registry == "" || s.srpm == "" {
		return rpmSet{}, fmt.Errorf("%s lacks an RPM: pam-totp %q, pam-totp-registry %q, SRPM %q", dir, s.main, s.registry, s.srpm)
	}
	return s, nil
}

// rpmUpgrade builds pam-totp again with `make rpm RPM_RELEASE=2` into a temporary directory: the
// same version, one release later, to upgrade to.
func rpmUpgrade(t *testing.T, s rpmSet) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("make", "rpm", "RPM_RELEASE=2", "RPM_TOPDIR="+dir)
	cmd.Dir = s.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make rpm RPM_RELEASE=2: %v\n%s", err, out)
	}
	pkgs, err := filepath.Glob(filepath.Join(dir, "RPMS", "*", "pam-totp-[0-9]*.rpm"))
	if err != nil || len(pkgs) != 1 {
		t.Fatalf("make rpm RPM_RELEASE=2 built %q (%v), want one pam-totp", pkgs, err)
	}
	return pkgs[0]
}

// rpmRun runs a command and returns its stdout, failing the test with stderr on error.
func rpmRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// rpmFile is one line of `rpm -qlpv`.
type rpmFile struct {
	mode, owner, group, path string
}

// rpmFiles lists a package's files with `rpm -qlpv`: mode, links, owner, group, size, a date of
// three fields, the path (and "-> target" for a symlink).
func rpmFiles(t *testing.T, pkg string) map[string]rpmFile {
	t.Helper()
	files := map[string]rpmFile{}
	for _, line := range strings.Split(strings.TrimSpace(rpmRun(t, "rpm", "-qlpv", pkg)), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			t.Fatalf("rpm -qlpv %s: cannot parse %q", pkg, line)
		}
		files[f[8]] = rpmFile{mode: f[0], owner: f[2], group: f[3], path: f[8]}
	}
	return files
}

// rpmExtract unpacks a package's payload into a new temporary directory.
func rpmExtract(t *testing.T, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet`, "sh", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", pkg, err, out)
	}
	return dir
}

// rpmChrootLibs copies bin and the shared objects it loads (ldd) into root at the same paths,
// so that rpm --root can run a scriptlet with it there.
func rpmChrootLibs(t *testing.T, root string, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		paths := []string{bin}
		for _, f := range strings.Fields(rpmRun(t, "ldd", bin)) {
			if strings.HasPrefix(f, "/") && !strings.HasSuffix(f, ":") {
				paths = append(paths, f)
			}
		}
		for _, p := range paths {
			if strings.HasPrefix(p, root+"/") {
				continue // installed in the root already
			}
			dst := filepath.Join(root, p)
			if _, err := os.Stat(dst); err == nil {
				continue
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := pamtest.CopyFile(p, dst, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
}
