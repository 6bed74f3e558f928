// Package store keeps a login node's local data in two bbolt files inside one root 0700 directory.
//
// tokens.db holds what the node is told: every user's tokens (id, name, algorithm, digits, period,
// secret, state, created, last used), hashed backup codes, and meta (schema version, applied
// registry revision, last update, source). It is written only by the node's authority (totp-syncd,
// or totp-admin on a site without a registry) and read by the login path.
//
// state.db holds what logins change: the last accepted time step of each token, consecutive
// failures and back-off of each user, used backup codes, and grace records. The login path writes it.
//
// Keys are "user\x00id" in flat buckets, so one user's records are one cursor range and a full
// listing is already in the order a registry snapshot sends.
//
// Rules every caller gets for free:
//   - Files are root 0600 in a root 0700 directory, checked on every open through the open
//     descriptor, never following symlinks (package securefile).
//   - Every open has a timeout (bbolt's flock wait) and nobody holds a database's lock between
//     transactions: View and Update open, run one transaction, and close. A Resident (totp-syncd's
//     verifier) keeps the files open but takes the flock per transaction, and opens a file again
//     when another process wrote or replaced it (resident.go).
//   - A missing tokens.db, a wrong schema, or any open or read error is an error, never "no token":
//     the login path turns it into "store unavailable" and denies TOTP users.
package store
