// Package admin is what totp-admin does on a site without a registry: it enrolls, lists, disables
// and removes tokens in a node's tokens.db, issues backup codes, clears lockouts in state.db,
// stores tokens imported from CSV files and google-authenticator secret files (parsed by package
// tokenimport). Checking a node's PAM stack and files is package doctor's.
//
// The command (cmd/totp-admin) only parses flags and prints; every decision is here, with the
// clock and the randomness passed in (Admin.Now, Admin.Rand) so that tests run on fixed instants.
//
// Rules that hold for every operation:
//   - A secret is written out in exactly one place: the enrollment screen of a new token
//     (WriteEnrollment). No error, listing or report of this package contains a secret, a code,
//     an otpauth URI or a backup code; import errors name the line and the field, never its text.
//   - Every string that comes from a store or an input file is passed through token.Clean before it
//     reaches a terminal, so a user or token name cannot carry terminal control sequences.
//   - A token is pending until a code from it is verified (Admin.Confirm, with token.Match); only
//     then does it become active, and the verified time step is stored in state.db so the same
//     code cannot log in. A code from outside the window burns its step the same way.
//   - Databases are opened per transaction (package store); bulk imports write in chunks so a
//     login never waits long for the lock.
//   - Files read on an admin's behalf (imports) are opened without following symlinks and must be
//     regular files (tokenimport.OpenInput), so a planted FIFO or link cannot hang or redirect totp-admin.
package admin
