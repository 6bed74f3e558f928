// Package adminclient is the HTTP client of the registry's admin API (docs/sync-protocol.md,
// "Endpoints (admin)"): users, tokens, backup codes, helpdesk passcodes, nodes, imports, the
// audit log and compaction. totp-admin --registry URL is a thin command line over it.
//
// Rules that hold for every call:
//   - Transport: HTTPS with TLS 1.2 or later. With Options.CAFile the registry's CA is pinned:
//     only that CA is trusted, not the system roots. Plain http:// is accepted only for a
//     loopback host (a registry with insecure_http = true in a test), so the admin token never
//     crosses a network in clear. Redirects are not followed.
//   - Authentication: every request carries Authorization: Bearer ADMIN-TOKEN. The token is
//     never part of an error, a log line or a String method; ReadTokenFile reads it from a file
//     only its owner may read.
//   - Every call has a deadline (Options.Timeout, or the caller's context if sooner); bodies
//     read from the registry are bounded.
//   - A change carries the reason given in Options.Reason as the X-Reason header, which the
//     registry writes into its audit record.
//   - Errors: an answer {"error": "..."} becomes an *APIError that holds the status and the
//     registry's message; errors.Is matches it against ErrUnauthorized (401, 403), ErrNotFound
//     (404) and ErrConflict (409). Anything the registry sends may reach a terminal, so the
//     command prints strings from answers through token.Clean.
//   - Secrets, backup codes, passcodes and node credentials come back once, in the typed answer
//     of the call that made them (NewToken, BackupCodes, Passcode, NewNode); the client keeps no
//     copy.
package adminclient
