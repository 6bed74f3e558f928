// Package clock is the time the components decide by: clock.Now is what verify, the registry,
// the node syncer, enrollment and mail use for TOTP steps, enrollment and failure timing.
//
// In a production build Now is time.Now and nothing else: the file of the untagged build
// (real.go) reads no environment and no argument. A build with the tag testclock (`make
// build-testclock`, used by the end-to-end suites) adds a settable offset instead, so tests
// move the components to the start of a time step rather than sleep until one begins: Now is
// the wall clock plus the offset held in a clock file. Daemons find the file in the environment
// variable PAM_TOTP_TEST_CLOCK, the PAM helper in its module argument test_clock=FILE (the
// module gives it a clean environment). A testclock build whose clock file is missing or
// malformed panics rather than fall back to the wall clock. Time keeps flowing from the offset
// on, so leases, kick and touch intervals, and timeouts behave as in production.
package clock
