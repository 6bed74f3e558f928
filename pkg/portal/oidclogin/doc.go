// Package oidclogin signs portal users in with the site's OpenID Connect provider: the
// authorization code flow with PKCE (S256), a state and a nonce per sign-in, on
// github.com/coreos/go-oidc/v3 and golang.org/x/oauth2.
//
// A sign-in is two requests. Start creates a Flow (state, nonce, PKCE verifier, the local path to
// return to), keeps it in the caller's FlowStore, binds it to the browser with a short-lived
// cookie and redirects to the provider. Finish handles the provider's redirect back to the
// callback URL: it takes the flow by its state (once; flows older than FlowLifetime are refused),
// checks the browser's cookie, exchanges the code with the verifier, verifies the ID token
// (signature, issuer, audience, expiry against the settable clock, nonce) and maps its claims to
// an Identity: the user name from the configured claim (a valid registry user name, the rule of
// pkg/token), the groups from the groups claim (a string or a list), and the required group.
//
// The FlowStore is given by the caller and lives server-side (in the registry, the kv store), so
// the replica that finishes a flow need not be the one that started it. MemoryFlows is an
// in-process store for one replica and tests.
//
// Errors that Finish returns are plain sentences for the user; the reason, without the code, the
// tokens or the client secret, goes to the log.
package oidclogin
