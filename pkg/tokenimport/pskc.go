package tokenimport

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// MaxPSKCFile bounds a PSKC file: about 1 kB per key, so some 60,000 tokens.
const MaxPSKCFile = 64 << 20

// PSKC algorithm and encryption identifiers (RFC 6030 and the W3C XML encryption and signature
// namespaces it uses).
const (
	pskcTOTP = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
	pskcHOTP = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
	xmlenc   = "http://www.w3.org/2001/04/xmlenc#"
)

// Errors of a PSKC file as a whole.
var (
	// ErrPSKCKey: the file has encrypted secrets and the pre-shared key is missing or wrong.
	ErrPSKCKey = errors.New("pre-shared key")
)

// PSKCOptions tune ParsePSKC.
type PSKCOptions struct {
	// Key is the pre-shared key (16, 24 or 32 bytes) of a file with encrypted secrets.
	Key []byte
	// Now is the time a policy's StartDate and ExpiryDate are compared with.
	Now time.Time
}

// PSKCToken is one valid KeyPackage of a PSKC file: a hardware TOTP token.
type PSKCToken struct {
	// Position is the KeyPackage's place in the file, from 1.
	Position     int
	Serial       string
	Manufacturer string
	Model        string
	// User is the user the file names (Key/UserId, or DeviceInfo/UserId), if it names one that
	// can be a login name: a plain name, or the UID= part of a distinguished name.
	User   string
	Secret []byte
	Params totp.Params
}

// Hardware returns the unassigned hardware token t becomes, imported at now.
func (t *PSKCToken) Hardware(now time.Time) token.Hardware {
	return token.Hardware{HardwareInfo: token.HardwareInfo{Serial: t.Serial, Manufacturer: t.Manufacturer, Model: t.Model,
		Algorithm: t.Params.Algorithm, Digits: t.Params.Digits, Period: t.Params.Period, Imported: now, User: t.User},
		Secret: t.Secret}
}

// PackageError is one invalid KeyPackage of a PSKC file. Msg names the element, never a secret.
type PackageError struct {
	Position int
	Serial   string
	Msg      string
}

func (e PackageError) Error() string {
	if e.Serial != "" {
		return fmt.Sprintf("KeyPackage %d (serial %s): %s", e.Position, token.Clean(e.Serial), e.Msg)
	}
	return fmt.Sprintf("KeyPackage %d: %s", e.Position, e.Msg)
}

// PSKCFile is what ParsePSKC found.
type PSKCFile struct {
	Tokens []PSKCToken
	// Invalid are the KeyPackages that cannot be imported.
	Invalid []PackageError
	// Warnings are for the admin's information (a signature that is not checked, a StartDate
	// still to come); they never hold a secret.
	Warnings []string
}

// The XML of RFC 6030 §4-6, as far as a TOTP token needs it. Elements are matched by local name,
// so a file may put the pskc namespace on a prefix or as the default.
type pskcContainer struct {
	XMLName       xml.Name       `xml:"KeyContainer"`
	Version       string         `xml:"Version,attr"`
	EncryptionKey *pskcEncKey    `xml:"EncryptionKey"`
	MACMethod     *pskcMACMethod `xml:"MACMethod"`
	Packages      []pskcPackage  `xml:"KeyPackage"`
	Signature     *struct{}      `xml:"Signature"`
}

type pskcEncKey struct {
	KeyName    string    `xml:"KeyName"`
	X509Data   *struct{} `xml:"X509Data"`
	DerivedKey *struct{} `xml:"DerivedKey"`
}

type pskcMACMethod struct {
	Algorithm string         `xml:"Algorithm,attr"`
	MACKey    *pskcEncrypted `xml:"MACKey"`
}

type pskcEncrypted struct {
	Method struct {
		Algorithm string `xml:"Algorithm,attr"`
	} `xml:"EncryptionMethod"`
	CipherValue string `xml:"CipherData>CipherValue"`
}

type pskcPackage struct {
	DeviceInfo struct {
		Manufacturer string `xml:"Manufacturer"`
		SerialNo     string `xml:"SerialNo"`
		Model        string `xml:"Model"`
		UserID       string `xml:"UserId"`
	} `xml:"DeviceInfo"`
	Keys []pskcKey `xml:"Key"`
}

type pskcKey struct {
	ID         string `xml:"Id,attr"`
	Algorithm  string `xml:"Algorithm,attr"`
	Parameters struct {
		Suite          string `xml:"Suite"`
		ResponseFormat *struct {
			Length   string `xml:"Length,attr"`
			Encoding string `xml:"Encoding,attr"`
		} `xml:"ResponseFormat"`
	} `xml:"AlgorithmParameters"`
	Data struct {
		Secret *struct {
			PlainValue     *string        `xml:"PlainValue"`
			EncryptedValue *pskcEncrypted `xml:"EncryptedValue"`
			ValueMAC       string         `xml:"ValueMAC"`
		} `xml:"Secret"`
		Time         *pskcNumber `xml:"Time"`
		TimeInterval *pskcNumber `xml:"TimeInterval"`
	} `xml:"Data"`
	Policy struct {
		StartDate  string `xml:"StartDate"`
		ExpiryDate string `xml:"ExpiryDate"`
	} `xml:"Policy"`
	UserID string `xml:"UserId"`
}

type pskcNumber struct {
	PlainValue string `xml:"PlainValue"`
}

// ParsePSKC parses a PSKC 1.0 file (RFC 6030) of TOTP keys. It checks the whole file: an error is
// a problem of the file as a whole (not XML, not a KeyContainer, encrypted secrets without the
// right key); a KeyPackage that cannot be imported (HOTP, a hash pam-totp does not support, a
// key that expired) is in PSKCFile.Invalid. Encrypted secrets (§6.1: a pre-shared key, AES-CBC
// with the IV before the cipher text and an HMAC over both, or AES key wrap) are checked against
// their MAC before they are decrypted. No error or message holds a secret.
func ParsePSKC(data []byte, o PSKCOptions) (PSKCFile, error) {
	var f PSKCFile
	if len(data) > MaxPSKCFile {
		return f, fmt.Errorf("larger than %d MiB: not a PSKC file this tool reads", MaxPSKCFile>>20)
	}
	var c pskcContainer
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	if err := d.Decode(&c); err != nil {
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return f, fmt.Errorf("not a PSKC file: XML error at line %d", se.Line)
		}
		if strings.Contains(err.Error(), "expected element type <KeyContainer>") {
			return f, errors.New("not a PSKC file: the document is not a KeyContainer")
		}
		return f, fmt.Errorf("not a PSKC file: %s", firstLine(err.Error()))
	}
	if c.Version != "1.0" {
		return f, fmt.Errorf("KeyContainer version %q: want 1.0 (RFC 6030)", token.Clean(c.Version))
	}
	if c.Signature != nil {
		f.Warnings = append(f.Warnings, "the file is signed; the signature is not checked")
	}
	k, err := newPSKCKeys(&c, o.Key)
	if err != nil {
		return f, err
	}
	seen := map[string]int{}
	for i := range c.Packages {
		p := &c.Packages[i]
		pos := i + 1
		serial := strings.TrimSpace(p.DeviceInfo.SerialNo)
		bad := func(format string, a ...any) {
			f.Invalid = append(f.Invalid, PackageError{Position: pos, Serial: serial, Msg: fmt.Sprintf(format, a...)})
		}
		t, warn, msg := k.token(p, pos, o.Now)
		switch {
		case msg != "":
			bad("%s", msg)
			continue
		case seen[serial] != 0:
			bad("serial also in KeyPackage %d: one device has one seed", seen[serial])
			continue
		}
		seen[serial] = pos
		if warn != "" {
			f.Warnings = append(f.Warnings, PackageError{Position: pos, Serial: serial, Msg: warn}.Error())
		}
		f.Tokens = append(f.Tokens, t)
	}
	if len(c.Packages) == 0 {
		return f, errors.New("the KeyContainer has no KeyPackage")
	}
	if k.encrypted && !k.used {
		f.Warnings = append(f.Warnings, "the file names an encryption key but no secret is encrypted")
	}
	return f, nil
}

// pskcKeys are a file's keys: the pre-shared key, and the MAC key it decrypts.
type pskcKeys struct {
	key       []byte
	mac       func() hash.Hash
	macKey    []byte
	encrypted bool // the file has an EncryptionKey
	used      bool // a secret was encrypted
}

func newPSKCKeys(c *pskcContainer, key []byte) (*pskcKeys, error) {
	k := &pskcKeys{key: key}
	if c.EncryptionKey == nil {
		return k, nil
	}
	k.encrypted = true
	switch {
	case c.EncryptionKey.X509Data != nil:
		return nil, errors.New("the secrets are encrypted to a certificate (RFC 6030 §6.2): not supported; ask the vendor for a file encrypted with a pre-shared key")
	case c.EncryptionKey.DerivedKey != nil:
		return nil, errors.New("the secrets are encrypted with a passphrase (RFC 6030 §6.3): not supported; ask the vendor for a file encrypted with a pre-shared key")
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("the secrets are encrypted with the pre-shared key %q: give it with --key-file FILE: %w",
			token.Clean(strings.TrimSpace(c.EncryptionKey.KeyName)), ErrPSKCKey)
	}
	if c.MACMethod == nil {
		return k, nil
	}
	switch strings.TrimSpace(c.MACMethod.Algorithm) {
	case "http://www.w3.org/2000/09/xmldsig#hmac-sha1":
		k.mac = sha1.New
	case "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256":
		k.mac = sha256.New
	case "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512":
		k.mac = sha512.New
	default:
		return nil, fmt.Errorf("MACMethod %q: not supported (want hmac-sha1, hmac-sha256 or hmac-sha512)",
			token.Clean(c.MACMethod.Algorithm))
	}
	if c.MACMethod.MACKey == nil {
		return nil, errors.New("MACMethod has no MACKey")
	}
	mk, err := k.decrypt(c.MACMethod.MACKey)
	if err != nil {
		return nil, fmt.Errorf("MACKey: %w", err)
	}
	if len(mk) == 0 {
		return nil, errors.New("MACKey is empty")
	}
	k.macKey = mk
	return k, nil
}

// decrypt decrypts an EncryptedValue with the pre-shared key. Its errors say what is wrong,
// never what was decrypted.
func (k *pskcKeys) decrypt(e *pskcEncrypted) ([]byte, error) {
	alg := strings.TrimSpace(e.Method.Algorithm)
	ct, err := base64.StdEncoding.DecodeString(stripSpace(e.CipherValue))
	if err != nil || len(ct) == 0 {
		return nil, errors.New("CipherValue is not base64")
	}
	size := 0
	switch alg {
	case xmlenc + "aes128-cbc", xmlenc + "kw-aes128":
		size = 16
	case xmlenc + "aes192-cbc", xmlenc + "kw-aes192":
		size = 24
	case xmlenc + "aes256-cbc", xmlenc + "kw-aes256":
		size = 32
	default:
		return nil, fmt.Errorf("encryption %q: not supported (want aes128-cbc, aes192-cbc, aes256-cbc or kw-aes128/192/256)",
			token.Clean(alg))
	}
	if len(k.key) != size {
		return nil, fmt.Errorf("%s needs a key of %d bytes, the key file has %d: %w",
			strings.TrimPrefix(alg, xmlenc), size, len(k.key), ErrPSKCKey)
	}
	block, err := aes.NewCipher(k.key)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(alg, xmlenc+"kw-") {
		out, err := unwrapAESKey(block, ct)
		if err != nil {
			return nil, fmt.Errorf("key unwrap failed (wrong key or damaged file): %w", ErrPSKCKey)
		}
		return out, nil
	}
	// xmlenc CBC: the IV, then whole blocks; the last byte of the plain text is the padding's
	// length, at most one block (the other padding bytes are arbitrary).
	if len(ct) < 2*aes.BlockSize || len(ct)%aes.BlockSize != 0 {
		return nil, errors.New("CipherValue is not an IV and whole AES blocks")
	}
	iv, body := ct[:aes.BlockSize], ct[aes.BlockSize:]
	out := make([]byte, len(body))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, body)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		clear(out)
		return nil, fmt.Errorf("bad padding after decryption (wrong key or damaged file): %w", ErrPSKCKey)
	}
	return out[:len(out)-pad], nil
}

// secret returns a Key's secret: the plain value, or the encrypted one after its MAC is checked.
func (k *pskcKeys) secret(key *pskcKey) ([]byte, string) {
	s := key.Data.Secret
	switch {
	case s == nil:
		return nil, "no Data/Secret (a key kept by reference is not supported)"
	case s.PlainValue != nil && s.EncryptedValue != nil:
		return nil, "Data/Secret has both a PlainValue and an EncryptedValue"
	case s.PlainValue != nil:
		b, err := base64.StdEncoding.DecodeString(stripSpace(*s.PlainValue))
		if err != nil {
			return nil, "Data/Secret/PlainValue is not base64"
		}
		return b, ""
	case s.EncryptedValue == nil:
		return nil, "Data/Secret has neither a PlainValue nor an EncryptedValue"
	case !k.encrypted:
		return nil, "Data/Secret is encrypted but the file has no EncryptionKey"
	}
	k.used = true
	cbc := strings.HasSuffix(strings.TrimSpace(s.EncryptedValue.Method.Algorithm), "-cbc")
	if cbc {
		// RFC 6030 §6.1.1: with CBC the MAC is what shows the secret was not changed: check it
		// first, in constant time, over the IV and the cipher text as they are in the file.
		if k.mac == nil {
			return nil, "the secret is encrypted with AES-CBC but the file has no MACMethod: it cannot be checked"
		}
		want, err := base64.StdEncoding.DecodeString(stripSpace(s.ValueMAC))
		if err != nil || len(want) == 0 {
			return nil, "Data/Secret has no valid ValueMAC"
		}
		ct, err := base64.StdEncoding.DecodeString(stripSpace(s.EncryptedValue.CipherValue))
		if err != nil {
			return nil, "CipherValue is not base64"
		}
		m := hmac.New(k.mac, k.macKey)
		m.Write(ct)
		if !hmac.Equal(m.Sum(nil), want) {
			return nil, "ValueMAC does not match: wrong key file, or the file was changed or damaged"
		}
	}
	b, err := k.decrypt(s.EncryptedValue)
	if err != nil {
		return nil, "Data/Secret: " + err.Error()
	}
	return b, ""
}

// token checks one KeyPackage; msg says why it cannot be imported, warn is for information.
func (k *pskcKeys) token(p *pskcPackage, pos int, now time.Time) (t PSKCToken, warn, msg string) {
	t = PSKCToken{Position: pos, Serial: strings.TrimSpace(p.DeviceInfo.SerialNo),
		Manufacturer: clip(p.DeviceInfo.Manufacturer), Model: clip(p.DeviceInfo.Model)}
	switch {
	case t.Serial == "":
		return t, "", "no DeviceInfo/SerialNo: a hardware token is imported for its serial"
	case token.ValidSerial(t.Serial) != nil:
		return t, "", "DeviceInfo/SerialNo: 1 to 64 printable characters without spaces or '/'"
	case len(p.Keys) != 1:
		return t, "", fmt.Sprintf("%d Key elements: want one per device", len(p.Keys))
	}
	key := &p.Keys[0]
	switch alg := strings.TrimSpace(key.Algorithm); alg {
	case pskcTOTP:
	case pskcHOTP:
		return t, "", "HOTP (counter-based) key: not supported, pam-totp is TOTP only"
	default:
		return t, "", fmt.Sprintf("Key Algorithm %q: not supported, pam-totp is TOTP only (%s)", token.Clean(alg), pskcTOTP)
	}
	t.Params = totp.DefaultParams
	if rf := key.Parameters.ResponseFormat; rf != nil {
		if enc := strings.TrimSpace(rf.Encoding); enc != "" && enc != "DECIMAL" {
			return t, "", fmt.Sprintf("ResponseFormat Encoding %q: only DECIMAL codes can be typed at a login prompt", token.Clean(enc))
		}
		n, err := strconv.Atoi(strings.TrimSpace(rf.Length))
		if err != nil || n < totp.MinDigits || n > totp.MaxDigits {
			return t, "", fmt.Sprintf("ResponseFormat Length %q: want %d to %d digits", token.Clean(rf.Length), totp.MinDigits, totp.MaxDigits)
		}
		t.Params.Digits = n
	}
	suite := strings.ToUpper(strings.TrimSpace(key.Parameters.Suite))
	switch strings.TrimPrefix(strings.ReplaceAll(suite, "-", ""), "HMAC") {
	case "", "SHA1":
		t.Params.Algorithm = totp.SHA1
	case "SHA256":
		t.Params.Algorithm = totp.SHA256
	case "SHA512":
		t.Params.Algorithm = totp.SHA512
	default:
		return t, "", fmt.Sprintf("Suite %q: not supported (want SHA1, SHA256 or SHA512)", token.Clean(suite))
	}
	if ti := key.Data.TimeInterval; ti != nil {
		n, err := strconv.Atoi(strings.TrimSpace(ti.PlainValue))
		if err != nil || n < totp.MinPeriod || n > totp.MaxPeriod {
			return t, "", fmt.Sprintf("Data/TimeInterval: want %d to %d seconds", totp.MinPeriod, totp.MaxPeriod)
		}
		t.Params.Period = n
	}
	if tm := key.Data.Time; tm != nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(tm.PlainValue), 10, 64); err != nil || n != 0 {
			return t, "", "Data/Time: only a time origin of 0 (the Unix epoch, RFC 6238's T0) is supported"
		}
	}
	if err := t.Params.Validate(); err != nil {
		return t, "", err.Error()
	}
	if d := strings.TrimSpace(key.Policy.ExpiryDate); d != "" {
		exp, err := time.Parse(time.RFC3339, d)
		if err != nil {
			return t, "", "Policy/ExpiryDate is not a date and time (RFC 3339)"
		}
		if !now.IsZero() && !now.Before(exp) {
			return t, "", "Policy/ExpiryDate " + exp.UTC().Format(time.RFC3339) + " has passed: the key must not be used"
		}
		warn = "the key expires on " + exp.UTC().Format(time.RFC3339) + " (Policy/ExpiryDate): it keeps working after that here"
	}
	if d := strings.TrimSpace(key.Policy.StartDate); d != "" {
		start, err := time.Parse(time.RFC3339, d)
		if err != nil {
			return t, "", "Policy/StartDate is not a date and time (RFC 3339)"
		}
		if now.Before(start) {
			warn = "the key is valid from " + start.UTC().Format(time.RFC3339) + " (Policy/StartDate): it works at once here"
		}
	}
	secret, bad := k.secret(key)
	if bad != "" {
		return t, "", bad
	}
	if len(secret) < totp.MinSecretLen || len(secret) > totp.MaxSecretLen {
		clear(secret)
		return t, "", fmt.Sprintf("the secret has %d bytes: want %d to %d", len(secret), totp.MinSecretLen, totp.MaxSecretLen)
	}
	t.Secret = secret
	for _, id := range []string{key.UserID, p.DeviceInfo.UserID} {
		if u := loginName(id); u != "" {
			t.User = u
			break
		}
	}
	return t, warn, ""
}

// ParsePSKCKey reads a pre-shared key as a key file holds it: hex (32, 48 or 64 digits, spaces
// and a newline allowed) or the raw 16, 24 or 32 bytes.
func ParsePSKCKey(b []byte) ([]byte, error) {
	text := stripSpace(string(b))
	if k, err := hex.DecodeString(text); err == nil && (len(k) == 16 || len(k) == 24 || len(k) == 32) {
		return k, nil
	}
	if n := len(b); n == 16 || n == 24 || n == 32 {
		return bytes.Clone(b), nil
	}
	return nil, errors.New("the key file holds neither 32, 48 or 64 hex digits nor a raw key of 16, 24 or 32 bytes")
}

// unwrapAESKey is the AES key unwrap of RFC 3394 §2.2.2 (xmlenc kw-aes*), with its integrity
// check.
func unwrapAESKey(block cipher.Block, ct []byte) ([]byte, error) {
	if len(ct) < 24 || len(ct)%8 != 0 {
		return nil, errors.New("wrapped key is not whole 64-bit blocks")
	}
	n := len(ct)/8 - 1
	var a [8]byte
	copy(a[:], ct[:8])
	r := make([]byte, 8*n)
	copy(r, ct[8:])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			copy(b[:8], a[:])
			for x := 0; x < 8; x++ {
				b[7-x] ^= byte(t >> (8 * x))
			}
			copy(b[8:], r[(i-1)*8:i*8])
			block.Decrypt(b[:], b[:])
			copy(a[:], b[:8])
			copy(r[(i-1)*8:], b[8:])
		}
	}
	iv := [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	if !hmac.Equal(a[:], iv[:]) {
		clear(r)
		return nil, errors.New("integrity check failed")
	}
	return r, nil
}

// loginName is the login name in a UserId: the text itself when it is a plain name, or the
// value of its UID= part when it is a distinguished name ("UID=jsmith,DC=example,DC=net").
func loginName(id string) string {
	id = strings.TrimSpace(id)
	if strings.Contains(id, "=") {
		name := ""
		for _, rdn := range strings.Split(id, ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(rdn), "="); ok && strings.EqualFold(k, "uid") {
				name = strings.TrimSpace(v)
			}
		}
		id = name
	}
	if id == "" || token.ValidUser(id) != nil || strings.ContainsAny(id, " \t,=") {
		return ""
	}
	return id
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r':
			return -1
		}
		return r
	}, s)
}

// clip makes a descriptive text of a file (manufacturer, model) safe to store and show.
func clip(s string) string {
	s = token.Clean(strings.TrimSpace(s))
	if len(s) > 128 {
		s = strings.ToValidUTF8(s[:128], "")
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return token.Clean(s)
}
