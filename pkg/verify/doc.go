// Package verify decides one authentication: the rules of DESIGN.md "Verification rules" in plain
// Go, with the clock, the store and the conversation passed in, so that every case is tested
// without libpam.
//
// Order of decisions, each logged once with user, service, client address, token id and reason:
//
//  1. the policy for the service (policy= argument, else the section named like the service);
//  2. a user NSS does not know is prompted like anyone else, then denied (user_unknown);
//  3. mode "off", exempt users, groups and networks let the user in without a prompt;
//  4. the user's tokens are read from tokens.db; any error there denies (authinfo_unavail);
//  5. no active token: enrollment grace lets the user in and says until when; otherwise denied;
//  6. a running back-off or a lockout denies without a prompt (maxtries);
//  7. SSH grace (same user, address and SSH key) or sudo freshness (same login session) let the
//     user in without a prompt;
//  8. one prompt; a TOTP code is checked against every active token (window, replay rule), then
//     the answer is tried as a backup code; the result is stored in the same state.db
//     transaction that re-reads the failure count and the last accepted steps.
package verify
