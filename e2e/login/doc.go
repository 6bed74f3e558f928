//go:build linux

// Package login starts the real login path and checks what a login ends in: the built
// pam_totp.so loaded by libpam (pam_start_confdir), the real static pam-totp-helper, bbolt stores
// in temporary directories, real local users, a real sshd on a loopback port driven by the
// golang.org/x/crypto/ssh client and by OpenSSH's ssh in a pseudo-terminal, and a real sudo.
//
// The package has only tests. They need root (they add users with useradd, write /etc/pam.d and
// /etc/sudoers.d files, and run sshd and sudo); without root every test skips and says so.
// TestMain runs `make build` and uses private copies of build/pam_totp.so and
// build/pam-totp-helper, so `go test ./e2e/login/` works from a fresh clone once
// `make deps` has run. Work that needs processes of its own (50 concurrent logins, new login
// sessions, a user's shell on a terminal) re-executes the test binary in a child mode.
// Everything a test adds to the system (users, groups, pam.d and sudoers files, /dev/log when
// it created it) is removed in t.Cleanup, also when the test fails; /run/sshd, which Debian's
// sshd needs, is created when missing and left in place. The libpam transaction runner, the
// local users and groups (ptt-*, ptg-*), the pty driver and the build in TestMain come from
// e2e/pamtest, shared with e2e/sync and cmd/totp's tests.
//
// The login suites run both ways a login reaches a verifier (ways): through the exec'd helper
// (socket=none) and through the resident verifier of a standalone totp-syncd (conf Verifier; table
// tests share one totp-syncd per way through conf Via, since it reads the config each request
// names). A fixture whose logins go to a resident verifier gives the module a tripwire helper that
// counts its runs, and wantAnswered fails the test when any login fell back to it, so a suite
// cannot pass through the helper alone. Tests about the helper itself (its clock argument, the
// limits and working directory of the module's child) run through the helper only.
//
// The helper and totp-syncd are the testclock builds (make build-testclock): each fixture has
// its own clock file (pamtest.Clock), passed to the helper as the module argument test_clock=
// and to totp-syncd in its environment, and codes are computed from that clock. A test that
// needs several codes of neighbouring time steps moves the clock to the start of a step
// (NextStep) instead of waiting for one; no test sleeps on the clock, and every other wait polls
// for an event (sshd's banner, a prompt on a terminal) under a deadline. One test checks that
// the helper of `make build` ignores test_clock=.
package login
