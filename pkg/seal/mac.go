package seal

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrMAC: a MAC did not verify: a tampered message, a wrong purpose, or a different key under
// the same id.
var ErrMAC = errors.New("seal: MAC does not verify")

const macSize = sha256.Size

// macRoot derives the root of a key's MAC keys, so no MAC key is the encryption key.
func macRoot(key []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, key, nil, "pam-totp seal mac", keySize)
}

// macKey returns the MAC key of key id for purpose: HKDF-Expand of the key's MAC root with the
// purpose as label, so a MAC made for one purpose does not verify for another.
func (k *Keyring) macKey(id, purpose string) ([]byte, error) {
	name := id + "\x00" + purpose
	if v, ok := k.derived.Load(name); ok {
		return v.([]byte), nil
	}
	root := k.macs[id]
	if root == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	mk, err := hkdf.Expand(sha256.New, root, "pam-totp mac: "+purpose, macSize)
	if err != nil {
		return nil, fmt.Errorf("seal: derive MAC key: %w", err)
	}
	k.derived.Store(name, mk)
	return mk, nil
}

// MAC returns a tag that authenticates msg for purpose under the primary key:
//
//	version (1 byte, 1) | key id length (1 byte) | key id | HMAC-SHA256 (32 bytes)
//
// The HMAC covers the tag's header too, so the key id cannot be swapped.
func (k *Keyring) MAC(purpose string, msg []byte) ([]byte, error) {
	if k.primary == "" {
		return nil, errors.New("seal: empty keyring")
	}
	return k.mac(k.primary, purpose, msg)
}

func (k *Keyring) mac(id, purpose string, msg []byte) ([]byte, error) {
	mk, err := k.macKey(id, purpose)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 2+len(id), 2+len(id)+macSize)
	out[0], out[1] = version, byte(len(id))
	copy(out[2:], id)
	h := hmac.New(sha256.New, mk)
	h.Write(out)
	h.Write(msg)
	return h.Sum(out), nil
}

// CheckMAC verifies a tag made by MAC for the same purpose and msg, under whichever key of the
// keyring the tag names.
func (k *Keyring) CheckMAC(purpose string, msg, tag []byte) error {
	id, err := k.MACKeyID(tag)
	if err != nil {
		return err
	}
	want, err := k.mac(id, purpose, msg)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, tag) {
		return fmt.Errorf("%w (key %q)", ErrMAC, id)
	}
	return nil
}

// MACKeyID returns the id of the key a tag names, without verifying it.
func (k *Keyring) MACKeyID(tag []byte) (string, error) {
	if len(tag) < 2 || tag[0] != version || tag[1] == 0 || tag[1] > maxIDLen || len(tag) != 2+int(tag[1])+macSize {
		return "", fmt.Errorf("%w: not a MAC tag", ErrMalformed)
	}
	id := string(tag[2 : 2+int(tag[1])])
	if !validID(id) {
		return "", fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return id, nil
}
