//go:build linux

// Package pamtest holds the fixtures that the end-to-end test packages (e2e/login,
// e2e/sync, e2e/portal and cmd/totp's tests) share, as net/http/httptest does for HTTP: it is imported
// only by tests.
//
// It has six parts:
//   - a libpam transaction runner (Run, TxSpec, Result and its Want methods): pam_start_confdir,
//     PAM_RHOST, pam_putenv, one or more pam_authenticate calls and pam_end, with the
//     conversation answered from a list and everything the module said recorded;
//   - local users and groups (AddUser, AddGroup, SetPassword), created with useradd and
//     groupadd under a prefix chosen per package, so that packages running in parallel never
//     pick the same name, and removed in t.Cleanup;
//   - what a TestMain needs (SkipReason, Root, Build, or all of them and a Clock at once:
//     Prepare): whether the tests can run here, the repository root, and `make build
//     build-testclock` with private copies of its outputs; and FreePort and Eventually;
//   - files and TLS for the servers a test starts (NewCA, CA.ServerCert and ServerCertSPKI,
//     WriteFile, WritePEM, PrivateDir, Mkdir): modes exactly as asked, a throwaway CA and
//     certificates for 127.0.0.1;
//   - the clock of the testclock binaries (Clock): a test moves it to the start of a time step
//     instead of waiting for one;
//   - a pseudo-terminal driver (OpenPTY, StartTerminal, StartTerminalAs and Terminal): a
//     program as the leader of a new session with a new pty as its controlling tty, run as the
//     test or as a user who owns the device, whose screen a test reads and into which it types,
//     like expect(1).
//
// Most of it needs root and a libpam with pam_start_confdir; SkipReason says when either is
// missing. The terminal driver needs root only to give the device to another user or to
// start a program as one.
package pamtest
