// Package nodesync is the node side of registry sync (docs/sync-protocol.md): the loop that
// totp-syncd runs to keep /var/lib/pam-totp/tokens.db equal to the registry's view of the node's
// users, so that logins read a local file and never wait on the network.
//
// The loop, per connection:
//
//  1. No tokens.db, an unknown schema, a revision of 0, a store of another epoch (announced in
//     the answers' headers and bookmarks), a store that fails its checks, a 410 from the watch or
//     a digest mismatch at a bookmark: fetch
//     GET /v1/sync/snapshot into a staging file (package store) and switch tokens.db to it with
//     one rename. Logins keep reading the old file until then.
//  2. GET /v1/sync/watch?since=REV: each complete batch is applied in one short transaction
//     together with the revision, count and digest; each bookmark is compared with meta and
//     refreshes the last contact (at most every few seconds). POST /v1/sync/ack follows batches
//     and bookmarks, best effort, coalesced.
//  3. Anything malformed, out of order or truncated ends the stream with nothing of the unfinished
//     batch applied (package syncframe checks the frames); the loop reconnects after an
//     exponential back-off (0.5 s doubling to 30 s, ±20 % jitter). A stream with no bytes for
//     three bookmark intervals (the registry announces its interval) is dropped and reconnected.
//     With several registry replicas (client.go), a failed one is left for the next at once,
//     and the back-off applies only once all of them failed in a row; the watch resumes from
//     the applied revision, and claims and enrollment calls follow the same replica.
//  4. Backup codes and passcodes that logins marked used in state.db, and whose record is still
//     in tokens.db, go to POST /v1/sync/used after batches and bookmarks and every 0.5 s while
//     connected (used.go); the registry deletes them, and the delete reaches every node.
//
// Transport: HTTPS trusting only the CA in [sync] ca_file; the node authenticates with the
// bearer credential in [sync] credential_file (root 0600, read at each connection, never logged)
// or with a client certificate (mTLS). Every request has a deadline or an idle timeout.
//
// Metrics are kept in a Metrics value and served in the Prometheus text format by ServeMetrics.
// Time and randomness come from Options, so tests drive the clock and the jitter.
package nodesync
