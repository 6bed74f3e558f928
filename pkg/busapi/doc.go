// Package busapi is totp-syncd's D-Bus service (docs/enrollment.md, "D-Bus service on
// totp-syncd"): the name and interface io.github.pamtotp.Sync1 at /io/github/pamtotp/Sync1 on
// the system bus, through which the `totp` CLI of a logged-in user reads the node's sync status
// and the user's own tokens and enrolls tokens, and the PAM helper enrolls a user at login.
//
// Who calls: the bus daemon's GetConnectionUnixUser of the message's sender, resolved to a user
// name through os/user at every call (nothing is cached). totp-syncd is built with cgo, so that
// os/user asks NSS (getpwuid_r) and users of LDAP or SSSD are known; a uid NSS does not know is
// refused. A user name is never taken from a message: no method has a user argument.
//
// Methods, each bounded by a deadline (Options.CallTimeout):
//
//	Status() a{sv}        registry s, applied_revision x, last_contact x (unix s, 0 never),
//	                      staleness_s d (-1 never), connected b, tokens_active_here u (the caller's)
//	ListTokens() a(sssxb) the caller's tokens: id, name, state, created (unix s), active here
//	SyncNow() x           ends a back-off wait of the syncer and returns the applied revision
//	                      once caught up, or after Options.SyncWait (2 s)
//
// BeginEnrollment, FinishEnrollment, RenameToken, RemoveToken, RegenerateBackupCodes and
// RequestBootstrapCode (enroll.go) act for the caller's user name through Options.Enroll: by
// default a nodesync.EnrollClient calling the registry's /v1/enroll/* with the node's credential;
// on a standalone node the local authority of package localenroll, which totp-syncd passes in; a
// node with neither answers Error.Unavailable. Refusals of either are *refusal.Error (the registry's
// as nodesync reads them: 401, 403, 409 and 429 are Refused, 404 NotFound, 400 Invalid) and keep
// their sentence under the D-Bus name of their kind (syncbus.ErrorName); an unreachable registry is
// Unavailable. BeginEnrollmentFor and FinishEnrollmentFor take
// a user name and answer only root (uid 0 as the bus reports it): the PAM helper enrolling a user
// in grace at login; they take no proof, so they only ever start a first token. The otpauth URI,
// codes, proofs and backup codes are never logged.
//
// Errors are io.github.pamtotp.Sync1.Error.{Unavailable,Refused,NotFound,Invalid} with one plain
// sentence as their only argument; the reason with the caller goes to the log. No secret is put
// in an error or a log. The bus policy is contrib/dbus/io.github.pamtotp.Sync1.conf: only root
// may own the name; everyone may call the interface, Introspectable and Peer.
package busapi
