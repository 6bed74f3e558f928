// Package doctor checks a node for `totp-admin doctor`: it reads a service's PAM stack as
// Linux-PAM runs it (includes, substacks, jumps) and warns about lines that would skip or weaken
// pam_totp.so, checks the ownership and modes of the config, the helper and the store, asks
// totp-syncd over the system bus for its status, and runs a real PAM transaction (through the
// Transact the caller passes in) that must reach pam_totp's code prompt without answering it.
//
// It decides and reports; the command prints. Nothing it reports holds a secret or a code.
package doctor
