// Package tokenimport parses the files that bring existing tokens into pam-totp: a CSV of
// "user,base32secret[,name]" lines (ParseCSV) and a google-authenticator secret file (ParseGA,
// ReadGAFile), and opens such files safely (OpenInput). It writes nothing: the standalone admin
// (package admin) and the registry both store what it returns, each in its own store. Errors and
// line messages name the line and the field, never a secret.
package tokenimport
