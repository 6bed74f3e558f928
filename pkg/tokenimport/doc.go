// Package tokenimport parses the files that bring existing tokens into pam-totp: a CSV of
// "user,base32secret[,name]" lines (ParseCSV) and a google-authenticator secret file (ParseGA,
// ReadGAFile), a PSKC file of hardware TOTP tokens (RFC 6030, ParsePSKC, with secrets in the
// clear or encrypted with a pre-shared key), and opens such files safely (OpenInput). It writes nothing: the standalone admin
// (package admin) and the registry both store what it returns, each in its own store. Errors and
// line messages name the line and the field, never a secret.
package tokenimport
