package tokenimport

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// rfcKey is the pre-shared key of RFC 6030 Figure 6 (§6.1).
var rfcKey, _ = hex.DecodeString("12345678901234567890123456789012")

// kwKey is the key encryption key of RFC 3394 §4.1.
var kwKey, _ = hex.DecodeString("000102030405060708090A0B0C0D0E0F")

var pskcNow = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePSKC(t *testing.T) {
	fig6 := string(readTestdata(t, "totp-figure6.pskcxml"))
	plain := string(readTestdata(t, "totp-plain.pskcxml"))
	wrongKey := bytes.Repeat([]byte{0x42}, 16)
	tests := []struct {
		name        string
		file        string // testdata file, or the XML itself when it starts with '<'
		key         []byte
		wantErr     string
		wantSerials []string
		wantInvalid []string // "position:substring"
		wantWarning string
	}{
		{name: "figure 2", file: "rfc6030-figure2.pskcxml", wantInvalid: []string{"1:no DeviceInfo/SerialNo"}},
		{name: "figure 3 hotp", file: "rfc6030-figure3.pskcxml", wantInvalid: []string{"1:HOTP (counter-based) key: not supported"}},
		{name: "figure 4 by reference", file: "rfc6030-figure4.pskcxml", wantInvalid: []string{"1:HOTP"}},
		{name: "figure 5 pin", file: "rfc6030-figure5.pskcxml", wantInvalid: []string{"1:HOTP", "2:pskc:pin\": not supported"}},
		{name: "figure 6 without key", file: "rfc6030-figure6.pskcxml", wantErr: "give it with --key-file"},
		{name: "figure 6 hotp", file: "rfc6030-figure6.pskcxml", key: rfcKey, wantInvalid: []string{"1:HOTP"}},
		{name: "figure 7 passphrase", file: "rfc6030-figure7.pskcxml", key: rfcKey, wantErr: "passphrase (RFC 6030 §6.3): not supported"},
		{name: "figure 8 certificate", file: "rfc6030-figure8.pskcxml", wantErr: "certificate (RFC 6030 §6.2): not supported"},
		{name: "figure 9 signed", file: "rfc6030-figure9.pskcxml", wantInvalid: []string{"1:HOTP"}, wantWarning: "signature is not checked"},
		{name: "figure 10 bulk", file: "rfc6030-figure10.pskcxml",
			wantInvalid: []string{"1:HOTP", "2:HOTP", "3:HOTP", "4:HOTP"}},
		{name: "figure 6 totp", file: "totp-figure6.pskcxml", key: rfcKey, wantSerials: []string{"987654321"}},
		{name: "figure 6 totp, key of the wrong size", file: "totp-figure6.pskcxml", key: append(rfcKey, rfcKey...),
			wantErr: "needs a key of 16 bytes, the key file has 32"},
		{name: "figure 6 totp, wrong key", file: "totp-figure6.pskcxml", key: wrongKey, wantErr: "wrong key"},
		{name: "figure 6 totp, wrong MAC", file: strings.Replace(fig6, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Tu+NvtQfmvfJzF6bmQiJqoLRExc=", 1),
			key: rfcKey, wantInvalid: []string{"1:ValueMAC does not match"}},
		{name: "figure 6 totp, cipher text changed", file: strings.Replace(fig6, "AAECAwQFBgcICQoLDA0OD+cI", "AAECAwQFBgcICQoLDA0OD+cJ", 1),
			key: rfcKey, wantInvalid: []string{"1:ValueMAC does not match"}},
		{name: "figure 6 totp, no MAC", file: cut(fig6, "<MACMethod", "</MACMethod>"), key: rfcKey,
			wantInvalid: []string{"1:no MACMethod"}},
		{name: "truncated", file: fig6[:len(fig6)/2], key: rfcKey, wantErr: "not a PSKC file: XML error"},
		{name: "not pskc", file: "<html><body/></html>", wantErr: "not a KeyContainer"},
		{name: "empty", file: "<KeyContainer Version=\"1.0\"/>", wantErr: "no KeyPackage"},
		{name: "version 2", file: "<KeyContainer Version=\"2.0\"><KeyPackage/></KeyContainer>", wantErr: "version \"2.0\""},
		{name: "plain, sha256 and 8 digits", file: "totp-plain.pskcxml", wantSerials: []string{"HW0001", "HW0002"}},
		{name: "kw-aes128", file: "totp-kw-aes128.pskcxml", key: kwKey, wantSerials: []string{"KW0001"}},
		{name: "kw-aes128, wrong key", file: "totp-kw-aes128.pskcxml", key: wrongKey, wantInvalid: []string{"1:key unwrap failed"}},
		{name: "expired", file: strings.Replace(plain, "</pskc:UserId>", "</pskc:UserId><pskc:Policy><pskc:ExpiryDate>2025-01-01T00:00:00Z</pskc:ExpiryDate></pskc:Policy>", 1),
			wantSerials: []string{"HW0002"}, wantInvalid: []string{"1:ExpiryDate 2025-01-01T00:00:00Z has passed"}},
		{name: "expires later", file: strings.Replace(plain, "</pskc:UserId>", "</pskc:UserId><pskc:Policy><pskc:ExpiryDate>2030-01-01T00:00:00Z</pskc:ExpiryDate></pskc:Policy>", 1),
			wantSerials: []string{"HW0001", "HW0002"}, wantWarning: "KeyPackage 1 (serial HW0001): the key expires on 2030-01-01"},
		{name: "not yet valid", file: strings.Replace(plain, "</pskc:UserId>", "</pskc:UserId><pskc:Policy><pskc:StartDate>2030-01-01T00:00:00Z</pskc:StartDate></pskc:Policy>", 1),
			wantSerials: []string{"HW0001", "HW0002"}, wantWarning: "valid from 2030-01-01"},
		{name: "duplicate serial", file: strings.Replace(plain, "HW0002", "HW0001", 1),
			wantSerials: []string{"HW0001"}, wantInvalid: []string{"2:serial also in KeyPackage 1"}},
		{name: "hex codes", file: strings.Replace(plain, `Length="6" Encoding="DECIMAL"`, `Length="6" Encoding="HEXADECIMAL"`, 1),
			wantSerials: []string{"HW0001"}, wantInvalid: []string{"2:only DECIMAL"}},
		{name: "md5", file: strings.Replace(plain, "HMAC-SHA256", "HMAC-MD5", 1),
			wantSerials: []string{"HW0002"}, wantInvalid: []string{"1:Suite \"HMAC-MD5\""}},
		{name: "10 digits", file: strings.Replace(plain, `Length="8"`, `Length="10"`, 1),
			wantSerials: []string{"HW0002"}, wantInvalid: []string{"1:want 6 to 8 digits"}},
		{name: "time origin", file: strings.Replace(plain, "<pskc:Time><pskc:PlainValue>0<", "<pskc:Time><pskc:PlainValue>100<", 1),
			wantSerials: []string{"HW0002"}, wantInvalid: []string{"1:time origin of 0"}},
		{name: "short secret", file: strings.Replace(plain, "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=", "MTIzNA==", 1),
			wantSerials: []string{"HW0002"}, wantInvalid: []string{"1:the secret has 4 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tc.file)
			if !strings.HasPrefix(tc.file, "<") {
				data = readTestdata(t, tc.file)
			}
			f, err := ParsePSKC(data, PSKCOptions{Key: tc.key, Now: pskcNow})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePSKC = %v, want an error with %q", err, tc.wantErr)
				}
				if len(f.Tokens) > 0 {
					t.Fatalf("ParsePSKC returned %d tokens with an error", len(f.Tokens))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePSKC: %v", err)
			}
			var serials []string
			for _, tok := range f.Tokens {
				serials = append(serials, tok.Serial)
			}
			if !slices.Equal(serials, tc.wantSerials) {
				t.Errorf("serials = %q, want %q", serials, tc.wantSerials)
			}
			if len(f.Invalid) != len(tc.wantInvalid) {
				t.Fatalf("invalid = %v, want %q", f.Invalid, tc.wantInvalid)
			}
			for i, want := range tc.wantInvalid {
				pos, sub, _ := strings.Cut(want, ":")
				got := f.Invalid[i]
				if fmt.Sprint(got.Position) != pos || !strings.Contains(got.Error(), sub) {
					t.Errorf("invalid[%d] = %q, want KeyPackage %s with %q", i, got, pos, sub)
				}
			}
			if tc.wantWarning != "" && !strings.Contains(strings.Join(f.Warnings, "\n"), tc.wantWarning) {
				t.Errorf("warnings = %q, want one with %q", f.Warnings, tc.wantWarning)
			}
			for _, msg := range append(f.Warnings, fmt.Sprint(f.Invalid)) {
				for _, secret := range []string{"12345678901234567890", "MTIzNDU2Nzg5", "AAECAwQFBgcI"} {
					if strings.Contains(msg, secret) {
						t.Errorf("message %q holds the secret", msg)
					}
				}
			}
		})
	}
}

// cut removes s[from, the end of to] from s.
func cut(s, from, to string) string {
	i, j := strings.Index(s, from), strings.Index(s, to)
	return s[:i] + s[j+len(to):]
}

func TestParsePSKCValues(t *testing.T) {
	t.Parallel()
	f, err := ParsePSKC(readTestdata(t, "totp-figure6.pskcxml"), PSKCOptions{Key: rfcKey, Now: pskcNow})
	if err != nil || len(f.Tokens) != 1 {
		t.Fatalf("ParsePSKC(figure 6 totp) = %v, %v", f, err)
	}
	got := f.Tokens[0]
	// RFC 6030 §6.1.1: the encrypted secret of Figure 6 is "12345678901234567890".
	if string(got.Secret) != "12345678901234567890" || got.Params != (totp.Params{Algorithm: totp.SHA1, Digits: 8, Period: 30}) ||
		got.Manufacturer != "Manufacturer" || got.Position != 1 || got.User != "" {
		t.Errorf("figure 6 token = %+v", got)
	}

	f, err = ParsePSKC(readTestdata(t, "totp-plain.pskcxml"), PSKCOptions{Now: pskcNow})
	if err != nil || len(f.Tokens) != 2 {
		t.Fatalf("ParsePSKC(plain) = %v, %v", f, err)
	}
	hw1, hw2 := f.Tokens[0], f.Tokens[1]
	if string(hw1.Secret) != "12345678901234567890123456789012" || hw1.Params != (totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60}) ||
		hw1.User != "alice" || hw1.Model != "Acme TOTP 8" {
		t.Errorf("HW0001 = %+v", hw1)
	}
	if string(hw2.Secret) != "12345678901234567890" || hw2.Params != totp.DefaultParams || hw2.User != "" || hw2.Position != 2 {
		t.Errorf("HW0002 = %+v", hw2)
	}

	f, err = ParsePSKC(readTestdata(t, "totp-kw-aes128.pskcxml"), PSKCOptions{Key: kwKey, Now: pskcNow})
	if err != nil || len(f.Tokens) != 1 {
		t.Fatalf("ParsePSKC(kw-aes128) = %v, %v", f, err)
	}
	if want, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF"); !bytes.Equal(f.Tokens[0].Secret, want) {
		t.Errorf("kw-aes128 secret = %x, want %x", f.Tokens[0].Secret, want)
	}
}

// TestParsePSKCAES256 encrypts a file as RFC 6030 §6.1 says, with aes256-cbc and hmac-sha256.
func TestParsePSKCAES256(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 32)
	macKey := bytes.Repeat([]byte{9}, 32)
	secret := []byte("12345678901234567890")
	encMAC := encryptCBC(t, key, macKey, 1)
	encSecret := encryptCBC(t, key, secret, 2)
	m := hmac.New(sha256.New, macKey)
	m.Write(encSecret)
	file := fmt.Sprintf(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"
  xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
 <EncryptionKey><ds:KeyName>k</ds:KeyName></EncryptionKey>
 <MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"><MACKey>
  <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>
  <xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData></MACKey></MACMethod>
 <KeyPackage><DeviceInfo><SerialNo>A256</SerialNo></DeviceInfo>
  <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><Data><Secret><EncryptedValue>
   <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>
   <xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData></EncryptedValue>
   <ValueMAC>%s</ValueMAC></Secret></Data></Key></KeyPackage></KeyContainer>`,
		base64.StdEncoding.EncodeToString(encMAC), base64.StdEncoding.EncodeToString(encSecret),
		base64.StdEncoding.EncodeToString(m.Sum(nil)))
	f, err := ParsePSKC([]byte(file), PSKCOptions{Key: key})
	if err != nil || len(f.Tokens) != 1 || !bytes.Equal(f.Tokens[0].Secret, secret) {
		t.Fatalf("ParsePSKC(aes256-cbc) = %+v, %v", f, err)
	}
}

func encryptCBC(t *testing.T, key, plain []byte, ivByte byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	p := append(bytes.Clone(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := append(bytes.Repeat([]byte{ivByte}, aes.BlockSize), make([]byte, len(p))...)
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], p)
	return out
}

func TestParsePSKCKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []byte
	}{
		{"hex", "12345678901234567890123456789012\n", rfcKey},
		{"hex, spaced", "1234 5678 9012 3456 7890 1234 5678 9012", rfcKey},
		{"raw", "0123456789abcdef", []byte("0123456789abcdef")},
		{"short", "1234", nil},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		got, err := ParsePSKCKey([]byte(tc.in))
		if !bytes.Equal(got, tc.want) || (err == nil) != (tc.want != nil) {
			t.Errorf("%s: ParsePSKCKey = %x, %v, want %x", tc.name, got, err, tc.want)
		}
	}
}

// FuzzPSKC feeds the parser any bytes and keys: it must never panic, and what it returns must be
// importable.
func FuzzPSKC(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.pskcxml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, rfcKey)
		f.Add(b, kwKey)
		f.Add(b, []byte{})
	}
	f.Fuzz(func(t *testing.T, data, key []byte) {
		got, err := ParsePSKC(data, PSKCOptions{Key: key, Now: pskcNow})
		if err != nil {
			if len(got.Tokens) > 0 {
				t.Fatalf("tokens with an error: %v", err)
			}
			if errors.Is(err, ErrPSKCKey) && len(key) != 0 && strings.Contains(err.Error(), hex.EncodeToString(key)) {
				t.Fatalf("error %q holds the key", err)
			}
			return
		}
		serials := map[string]bool{}
		for _, tok := range got.Tokens {
			if err := tok.Params.Validate(); err != nil {
				t.Fatalf("token %q: %v", tok.Serial, err)
			}
			if len(tok.Secret) < totp.MinSecretLen || len(tok.Secret) > totp.MaxSecretLen || tok.Serial == "" || serials[tok.Serial] {
				t.Fatalf("token %q: %d-byte secret, or its serial is empty or repeated", tok.Serial, len(tok.Secret))
			}
			serials[tok.Serial] = true
		}
	})
}
