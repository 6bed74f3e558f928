// Package portal is the web self-service portal that totp-registry serves under /portal/ on
// its TLS listener: a user signs in (a code mailed to them, a current code or backup code of a
// token, or the site's OpenID Connect provider), then lists, adds, verifies, renames and removes
// their tokens, watches a new token reach the login nodes, and gets new backup codes.
//
// The pages are server-rendered html/template with a little progressive JavaScript (copy
// buttons, the live node count, print, a confirmation before leaving unsaved backup codes); the
// templates and static files are embedded. Every page works without JavaScript except those
// conveniences.
//
// The package decides nothing about enrollment: every change goes through a Backend, which the
// registry implements on the same enroll.Service its /v1/enroll endpoints use, bound to its kv
// store (pkg/registry/portal.go). Sessions live in that store too (Backend's session methods),
// so any replica serves them and signing out ends them everywhere.
//
// Safety: the session cookie __Host-pamtotp is HttpOnly, Secure and SameSite=Strict and carries
// a random 256-bit id whose SHA-256 keys the server-side record; sessions end after Config's
// idle and absolute limits; every POST carries a CSRF token compared in constant time; every
// response carries a strict Content-Security-Policy (no inline script or style), no referrer,
// no-store, nosniff and frame denial. Sign-in attempts are limited per client address (in the
// memory of each replica) and failed codes per user (a sign-in failure record of its own at the
// registry, which locks only sign-in by code: pkg/enroll). No
// code, secret, otpauth URI, backup code or session id is logged; the secret and URI appear only
// in the no-store enrollment page.
package portal
