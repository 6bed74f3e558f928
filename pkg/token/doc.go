// Package token is the domain of pam-totp: a user's token and its states, backup codes, the
// checks on user and token names, token ids and default names, the one terminal-safe Clean, and
// hardware tokens not yet assigned to a user (Hardware) and how they become a user's token,
// the one code-window and replay rule (Match) that the login helper, the registry, the standalone
// node authority and totp-admin all call.
//
// The JSON form of Token and BackupCode is what tokens.db and the registry store: fields and tags
// do not change without a schema version.
//
// Match takes the instant, the window, how far a clock-skew hint may look, and the last accepted
// time step; it never reads a clock or a store. Its callers record what it returns in the same
// transaction that accepts or refuses: an accepted step, and also a step matched outside the
// window (a Skew result), which is burned so that a code shown early can never be accepted later.
package token
