// Package paths says where pam-totp's installed files live: the directories `make install` was
// given (LIBEXECDIR, SYSCONFDIR, LOCALSTATEDIR, RUNDIR), which the Makefile links into every
// binary with -ldflags -X, and the files below them. Every default path of every binary comes
// from here; pam_totp.so gets the same directories as -D flags from the same make variables.
//
// The values below are the defaults of `go build`, `go test` and the testclock builds: the
// layout of `make install` with PREFIX=/usr.
package paths

import "path/filepath"

// The directories, set at link time (-X github.com/pam-totp/pam-totp/pkg/paths.SysconfDir=...).
// They must stay variables initialised to constant strings, or -X no longer sets them; read them
// only through the functions below, which join them at run time.
var (
	LibexecDir    = "/usr/libexec"
	SysconfDir    = "/etc"
	LocalstateDir = "/var"
	RunDir        = "/run"
)

// ConfDir is the directory of the configs, credentials and keys ($SYSCONFDIR/pam-totp).
func ConfDir() string { return filepath.Join(SysconfDir, "pam-totp") }

// Conf is the file name in ConfDir.
func Conf(name string) string { return filepath.Join(ConfDir(), name) }

// NodeConfig is the node's config, which pam_totp.so, the helper, totp-syncd and totp-admin read
// unless told otherwise.
func NodeConfig() string { return Conf("pam_totp.conf") }

// RegistryConfig is totp-registry's config.
func RegistryConfig() string { return Conf("registry.conf") }

// StateDir is a node's store directory (tokens.db, state.db), root 0700.
func StateDir() string { return filepath.Join(LocalstateDir, "lib", "pam-totp") }

// RegistryStateDir holds the registry's bbolt store.
func RegistryStateDir() string { return filepath.Join(LocalstateDir, "lib", "pam-totp-registry") }

// VerifySocket is the resident verifier's socket, where pam_totp.so asks first.
func VerifySocket() string { return filepath.Join(RunDir, "pam-totp", "verify.sock") }

// Helper is the login helper pam_totp.so starts.
func Helper() string { return filepath.Join(LibexecDir, "pam-totp", "pam-totp-helper") }
