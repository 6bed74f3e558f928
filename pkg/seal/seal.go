package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// Sentinel errors; wrapped with detail (never key material or plaintext).
var (
	// ErrMalformed: not a sealed record of a known version, or truncated.
	ErrMalformed = errors.New("seal: malformed sealed record")
	// ErrUnknownKey: the record names a key id the keyring does not have.
	ErrUnknownKey = errors.New("seal: unknown key id")
	// ErrDecrypt: authentication failed: a wrong aad, a tampered record, or a different key
	// under the same id.
	ErrDecrypt = errors.New("seal: authentication failed")
	// ErrKeyFile: the key file is malformed (the error names the line).
	ErrKeyFile = errors.New("seal: bad key file")
)

const (
	version    = 1
	keySize    = 32
	nonceSize  = 12
	tagSize    = 16
	maxIDLen   = 32
	maxKeyFile = 1 << 20
)

// keyFileRule: root-owned (the effective user), 0600 at most.
var keyFileRule = securefile.Rule{Forbidden: 0o077, What: "key file"}

// Keyring holds the keys of a key file: all of them open, the primary (the last) seals. It is
// immutable and safe for concurrent use.
type Keyring struct {
	primary string
	keys    map[string]cipher.AEAD
	macs    map[string][]byte // per key id: HKDF(key, "pam-totp seal mac"), the root of MAC keys
	derived sync.Map          // key id + "\x00" + purpose -> MAC key ([]byte)
	rand    io.Reader         // nonces
}

// LoadKeyring reads the key file at path (see the package doc).
func LoadKeyring(path string) (*Keyring, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	k, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

func readKeyFile(path string) ([]byte, error) {
	data, err := securefile.ReadFile(path, keyFileRule, maxKeyFile)
	if errors.Is(err, securefile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", err, ErrKeyFile)
	}
	return data, err
}

// ParseKeyring parses the contents of a key file. LoadKeyring is the way in for a file on disk;
// this is for tests and for keys that come from elsewhere.
func ParseKeyring(data []byte) (*Keyring, error) {
	k, err := parse(data)
	if err != nil {
		return nil, err
	}
	if k.primary == "" {
		return nil, fmt.Errorf("no keys: %w", ErrKeyFile)
	}
	return k, nil
}

// parse reads every key line; a file without keys gives an empty keyring.
func parse(data []byte) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}, macs: map[string][]byte{}, rand: rand.Reader}
	first := map[string]int{}
	key := make([]byte, base64.StdEncoding.DecodedLen(64))
	defer clear(key)
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"KEYID BASE64-KEY\", got %d fields: %w", n, len(f), ErrKeyFile)
		}
		id := string(f[0])
		if !validID(id) {
			return nil, fmt.Errorf("line %d: key id is not 1 to %d of A-Z a-z 0-9 _ -: %w", n, maxIDLen, ErrKeyFile)
		}
		if at, dup := first[id]; dup {
			return nil, fmt.Errorf("line %d: duplicate key id %q (first on line %d): %w", n, id, at, ErrKeyFile)
		}
		first[id] = n
		if len(f[1]) > 64 {
			return nil, fmt.Errorf("line %d: key %q: longer than a 32-byte key in base64: %w", n, id, ErrKeyFile)
		}
		got, err := base64.StdEncoding.Decode(key, f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: not valid base64: %w", n, id, ErrKeyFile)
		}
		if got != keySize {
			return nil, fmt.Errorf("line %d: key %q: %d bytes, want %d: %w", n, id, got, keySize, ErrKeyFile)
		}
		aead, err := newAEAD(key[:keySize])
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %w", n, id, err)
		}
		k.keys[id] = aead
		if k.macs[id], err = macRoot(key[:keySize]); err != nil {
			return nil, fmt.Errorf("line %d: key %q: %w", n, id, err)
		}
		k.primary = id
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// PrimaryID returns the id of the key that Seal uses.
func (k *Keyring) PrimaryID() string { return k.primary }

// Has reports whether the keyring has a key with this id.
func (k *Keyring) Has(id string) bool { _, ok := k.keys[id]; return ok }

// Seal encrypts plaintext under the primary key, bound to aad (callers pass the record's kv key).
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := k.keys[k.primary]
	if aead == nil {
		return nil, errors.New("seal: empty keyring")
	}
	h := 2 + len(k.primary)
	out := make([]byte, h+nonceSize, h+nonceSize+len(plaintext)+tagSize)
	out[0], out[1] = version, byte(len(k.primary))
	copy(out[2:], k.primary)
	nonce := out[h:]
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: random nonce: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, additional(out[:h], aad)), nil
}

// Open decrypts a record sealed under any key of the keyring with the same aad.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	id, h, err := header(sealed)
	if err != nil {
		return nil, err
	}
	aead := k.keys[id]
	if aead == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	pt, err := aead.Open(nil, sealed[h:h+nonceSize], sealed[h+nonceSize:], additional(sealed[:h], aad))
	if err != nil {
		return nil, fmt.Errorf("%w (key %q)", ErrDecrypt, id)
	}
	return pt, nil
}

// Reseal returns sealed re-sealed under the primary key, and true; or sealed itself and false if
// it already is under the primary. It is the step of a rotation walk.
func (k *Keyring) Reseal(sealed, aad []byte) ([]byte, bool, error) {
	id, err := k.KeyID(sealed)
	if err != nil {
		return nil, false, err
	}
	if id == k.primary {
		return sealed, false, nil
	}
	pt, err := k.Open(sealed, aad)
	if err != nil {
		return nil, false, err
	}
	defer clear(pt)
	out, err := k.Seal(pt, aad)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// KeyID returns the id of the key a record was sealed with, without opening it.
func (k *Keyring) KeyID(sealed []byte) (string, error) {
	id, _, err := header(sealed)
	return id, err
}

// IsSealed reports whether b has the form of a sealed record (version, a valid key id, room for a
// nonce and a tag). It is a format check, not authentication: only Open proves a record genuine.
func IsSealed(b []byte) bool {
	_, _, err := header(b)
	return err == nil
}

// header parses a sealed record's header and returns the key id and the header's length.
func header(b []byte) (id string, n int, err error) {
	if len(b) < 2 {
		return "", 0, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != version {
		return "", 0, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	n = 2 + int(b[1])
	if b[1] == 0 || b[1] > maxIDLen || len(b) < n+nonceSize+tagSize {
		return "", 0, fmt.Errorf("%w: truncated or bad key id length", ErrMalformed)
	}
	id = string(b[2:n])
	if !validID(id) {
		return "", 0, fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return id, n, nil
}

func additional(header, aad []byte) []byte {
	return append(append(make([]byte, 0, len(header)+len(aad)), header...), aad...)
}

// GenerateKey returns a new key line "ID BASE64\n" with 32 bytes from r, ready to append to a key
// file.
func GenerateKey(r io.Reader, id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("seal: key id %q is not 1 to %d of A-Z a-z 0-9 _ -", id, maxIDLen)
	}
	key := make([]byte, keySize)
	defer clear(key)
	if _, err := io.ReadFull(r, key); err != nil {
		return "", fmt.Errorf("seal: generate key: %w", err)
	}
	return id + " " + base64.StdEncoding.EncodeToString(key) + "\n", nil
}

// AppendKey rotates: it appends a fresh key from r to the key file at path, creating the file if
// it is missing, and returns the new key's id (the UTC time, with a random suffix if that id is
// taken). The new key becomes the primary for keyrings loaded afterwards. The file is replaced
// atomically; its directory must not be writable by group or others.
func AppendKey(path string, r io.Reader) (string, error) {
	return appendKey(path, r, time.Now())
}

func appendKey(path string, r io.Reader, now time.Time) (string, error) {
	dir := filepath.Dir(path)
	if err := securefile.CheckDir(dir, securefile.Policy); err != nil {
		return "", fmt.Errorf("append key to %s: %w", path, err)
	}
	unlock, err := lockDir(dir, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("append key to %s: %w", path, err)
	}
	defer unlock()

	old, err := readKeyFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("append key: %w", err)
	}
	defer clear(old)
	existing, err := parse(old)
	if err != nil {
		return "", fmt.Errorf("append key: key file %s: %w", path, err)
	}
	id := now.UTC().Format("20060102T150405Z")
	for existing.Has(id) {
		var b [3]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("append key: %w", err)
		}
		id = now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	line, err := GenerateKey(r, id)
	if err != nil {
		return "", err
	}
	data := append([]byte{}, old...)
	defer clear(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, line...)
	if k, err := ParseKeyring(data); err != nil {
		return "", fmt.Errorf("append key: new key file does not check: %w", err)
	} else if k.PrimaryID() != id {
		return "", fmt.Errorf("append key: new key %q is not the primary", id)
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*") // 0600, O_EXCL
	if err != nil {
		return "", fmt.Errorf("append key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("append key to %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return id, nil
}

// lockDir takes an exclusive flock on dir, so two rotations cannot both append to the same old
// file and lose a key.
func lockDir(dir string, timeout time.Duration) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { d.Close() }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR || time.Now().After(deadline) {
			d.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
