// Package registry is totp-registry: the central owner of users, tokens, backup codes and login
// nodes, which serves every node its share of the records over the sync protocol
// (docs/sync-protocol.md) and takes admin changes over a small JSON API.
//
// # Data
//
// Everything lives in one revisioned key-value store (package kv). One admin change is one
// kv.Update, hence one revision, and it writes its audit record in the same transaction. A
// request whose desired state already holds (converge, errUnchanged) writes nothing at all: no
// revision, no audit record, and its answer says "changed": false (registryapi.Outcome). Keys:
//
//	user/NAME            User JSON: name, mail, scopes, created; and mac
//	rec/t/USER/ID        a token, as a sealed record (below); syncframe.TokenKey after "rec/"
//	rec/b/USER/ID        a backup code or helpdesk passcode; syncframe.BackupKey after "rec/"
//	node/NAME            nodeRecord JSON: name, scope, SHA-256 hex of the credential secret, created; and mac
//	audit/%020d          AuditRecord JSON: seq, time, actor, action, target, reason, prev, hash
//	meta/audit-head      the last audit record's seq and hash (so appending needs no scan)
//	hw/SERIAL            an unassigned hardware token (token.Hardware JSON sealed, additional data the key)
//	hwa/SERIAL           "USER/ID" of the token a hardware token was assigned as: a hint, checked against the token
//	nodeack/NAME         on etcd: the revision node NAME acknowledged, published for the other replicas; and mac (ackshare.go)
//	portal/acks-wanted   on etcd: a portal page counts the nodes at a revision (ackshare.go)
//	portal/session/HEX   a portal session, and mac; portal/oidc/HEX a sign-in flow (portal.go)
//
// A sealed record is JSON {"scopes":[…],"sealed":base64,"mac":base64}: the scopes of its user in
// the clear, so deciding which nodes see a record needs no decryption, and the value that nodes
// receive — json.Marshal of token.Token or token.BackupCode, compact, TOTP secret included —
// sealed with the keyring (AES-GCM, additional data = the record key without "rec/", so a sealed
// value cannot be moved to another key). No secret is ever in the store file in any encoding. A
// user's scope change rewrites the wrappers of all its records (same sealed bytes, new scopes,
// new MACs) in one revision.
//
// # Authentication
//
// People who can write the store need not hold the key file (etcd's administrators), so every
// record is authenticated (auth.go): users, nodes, sealed-record wrappers and bootstrap codes
// carry a MAC (seal.Keyring.MAC, purpose "record") over their kind, full key and content — for a
// wrapper the scopes and the sealed bytes. A record that fails is refused wherever it is read and
// logged by key: served to no node, counted in no digest, never a node credential. The audit chain's hash
// is a MAC too (purpose "audit"). Bookmarks carry the audit head; nodes keep the highest in
// tokens.db and report it in their acks, and VerifyAudit fails naming a node whose head the chain
// lacks (anchor.go). A store written before records were authenticated is refused at start until
// AuthenticateStore (totp-registry authenticate-store) has run once. docs/etcd.md says why.
//
// # Index
//
// The server keeps, per scope, the count and syncframe.Digest of the records visible in it. It is
// built from one View at start and advanced by a single goroutine that tails kv.Events after each
// commit; the same goroutine keeps the most recent changes, decrypted, in a bounded in-memory log,
// so a change is decrypted once however many nodes watch, and a bookmark costs no store access.
// A stream sends a bookmark only when its position equals the index's revision, so the digest it
// sends describes exactly the set the node has. Streams that fall behind the log read kv.Events
// themselves.
//
// For a node of scope S, a record change is translated with the event's previous value: a put
// visible in S is a put (left out when the value and visibility did not change, as after a key
// rotation); a put no longer visible in S whose previous value was is a delete; a delete of a
// previously visible record is a delete; anything else is invisible.
//
// # Not in the store
//
// Node acknowledgements (applied revision, count, digest agreement, last contact, lag, audit
// anchor) are kept in memory: writing them would create revisions. On etcd, while a portal page
// counts the nodes that applied a token, the replicas publish the applied revisions it asks for
// (ackshare.go), at most once a second each. Open streams are
// registered per node, so removing a node ends them at once with an error frame node_removed.
//
// Nothing here logs a secret, a credential, a code, an otpauth URI or a request body.
package registry
