// Package seal encrypts the registry's secrets at rest with AES-256-GCM under a keyring kept in a
// key file outside the store, so a copy of the store (a backup, a stolen disk image of the data
// directory) reveals no TOTP secret.
//
// # Envelope
//
// Kept simple on purpose: each record is sealed directly with a master key from the keyring, and
// names that key in its header. There are no per-record data keys.
//
//	version (1 byte, 1) | key id length (1 byte, 1-32) | key id | nonce (12 random bytes) |
//	ciphertext | GCM tag (16 bytes)
//
// The GCM additional data is the header (version, length, key id) followed by the caller's aad.
// Callers pass the record's kv key as aad, so a sealed value copied to another key does not open.
//
// # MACs
//
// Records that need no secrecy but must not be forged or edited by someone who can write the
// store (the registry's users, nodes, sealed-record wrappers, the audit chain) carry a MAC tag:
//
//	version (1 byte, 1) | key id length (1 byte) | key id | HMAC-SHA256 (32 bytes)
//
// The HMAC key is derived from the named key with HKDF-SHA256: first a MAC root (label
// "pam-totp seal mac"), then one key per purpose (label "pam-totp mac: PURPOSE"), so a MAC is
// never made with the encryption key and a tag made for one purpose does not verify for another.
// The HMAC covers the tag's header and the caller's message.
//
// # Key file
//
// Root-owned, mode 0600 at most, never a symlink (package securefile). One key per line:
//
//	# comment
//	KEYID BASE64(32 bytes)
//
// Key ids are 1 to 32 of [A-Za-z0-9_-] and unique. The last key in the file is the primary: Seal
// uses it; Open uses whichever key a record names. Errors name the file and line, never key
// material.
//
// # Rotation
//
// AppendKey adds a fresh key at the end of the file (atomically: a 0600 temporary file renamed
// into place, under a lock on the directory), which makes it the primary for a process that loads
// the keyring afterwards. Records sealed under older keys still open. The registry then walks its
// records and re-seals each under the new primary (Reseal); once no record names an old key, the
// old line can be removed from the file by hand.
//
// Nonces are random, so one key should seal well under 2^32 records; a registry that seals on
// every token change stays far below that, and rotation resets the count.
package seal
