//go:build linux

// Package portal drives the registry's web self-service portal (pkg/portal) in a real browser:
// headless Chromium (Debian's chromium, /usr/bin/chromium) through github.com/chromedp/chromedp,
// against a real totp-registry (TLS on 127.0.0.1 with a throwaway CA, a bbolt store, [portal]
// enabled with sign-in by mail, by code and by OpenID Connect, mail to a real SMTP sink of
// pkg/mail/mailtest), a real totp-syncd node following it, and libpam logins on that node with
// the built pam_totp.so.
//
// What it covers:
//   - the whole first enrollment: sign in with the mailed code, add a token, read the secret from
//     the page, a wrong code and a code of another time refused with the CLI's words, the right
//     code, "active on 1 of 1 login nodes" (the time from the verified code to it is logged),
//     the backup codes downloaded by the browser (the file's codes are the page's), then a libpam
//     login on the node with the next code;
//   - the QR image decodes (zbarimg) to the otpauth URI of the link;
//   - a second token and a removal each need a proof; a used backup code is refused;
//   - OpenID Connect sign-in through the test provider's login form (pkg/portal/oidclogin/oidctest);
//     a wrong state, an expired authorization code and a user outside required_group refused; the
//     admin overview for a user of admin_group only;
//   - refused requests (no or a wrong CSRF token, another user's cookie, another user's token
//     id, no session, a replayed sign-in code, an expired session): each refused with the users'
//     tokens at the registry unchanged, beside a control request that does change them;
//   - the security headers and the session cookie's flags on every page the browser visits;
//   - keyboard only: the sign-in, add-token and first-code forms completed with Tab, typing and
//     Enter; leaving unsaved backup codes asks first.
//
// With PAM_TOTP_SCREENSHOTS=1 (make screenshots) the tests save a PNG of every page at phone
// (390x844) and desktop (1280x800) width under docs/portal/, shown in docs/portal.md.
//
// One registry, node, mail sink, OpenID provider and browser serve the whole package (TestPortal
// and its subtests, each with its own users and browser context), so that it runs in seconds.
// The package has only tests. They need root (local users for the libpam logins, a root-owned
// helper); without root, or without Chromium, every test skips and says why. TestMain runs
// `make build build-testclock` (pamtest.Prepare); the registry, node and helper read one clock
// file (pamtest.Clock) that the tests move forward, each to a time step no code was used in
// (freshStep), instead of sleeping. Chromium trusts the registry's certificate by its key's SPKI
// hash (--ignore-certificate-errors-spki-list), no other certificate error. Failure messages name
// a page by its headings and error only: a page may hold a secret or backup codes.
package portal
