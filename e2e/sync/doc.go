//go:build linux

// Package sync starts the whole registry chain and checks what a login ends in: the real
// totp-registry (TLS with a throwaway CA made in the test), real totp-syncd processes, one per
// simulated login node with its own store directory and pam_totp.conf, and the built
// pam_totp.so with pam-totp-helper driven through libpam (pam_start_confdir) against each node's
// config. Tokens are written at the registry (its admin API through pkg/adminclient, or the
// built totp-admin --registry) and must reach, and log in on, every node.
//
// What it covers:
//   - a token added at the registry logs in on three nodes (the time from the write to the last
//     login is logged), and a disabled one fails on each;
//   - kill -9 of the registry: logins go on; after a restart the nodes resume from their
//     revision without a resync; a node stopped across a compaction gets 410, resyncs, and ends
//     with the same digest as the others;
//   - kill -9 of totp-syncd during a large resync: tokens.db, opened by a reader loop, always
//     holds one complete set (old or new, never a mix), and a login during the resync answers
//     within a bound with the right result;
//   - node authentication: a wrong CA, a missing or wrong credential, a removed node (its stream
//     closes, then 401) and a request for another scope (403).
//
// The package has only tests. They need root (they add local users with useradd, and the module
// insists on a root-owned helper); without root every test skips and says so. TestMain runs
// `make build build-testclock` and uses private copies of the module and of the testclock Go
// binaries; when totp-registry or totp-syncd cannot be built every test skips with the reason.
// Every helper, totp-syncd and totp-registry of the suite reads one clock file (pamtest.Clock,
// the tests run one at a time): a test that needs codes of neighbouring steps moves it to the
// start of a step (nextStep) instead of waiting for one. Each process's output goes to a log file in its
// temporary directory, shown when a test fails. Every process, user and directory is removed in
// t.Cleanup, also when the test fails.
//
// The libpam transaction runner, the local users and the build in TestMain come from
// e2e/pamtest, shared with e2e/login; this package's users are named pts-*.
package sync
