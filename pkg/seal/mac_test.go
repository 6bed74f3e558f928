package seal

import (
	"errors"
	"testing"
)

func TestMAC(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, twoKeys)
	tag, err := k.MAC("record", []byte("user/alice {scopes:[a]}"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := k.MACKeyID(tag); err != nil || id != "new" {
		t.Fatalf("MACKeyID = %q, %v, want new", id, err)
	}
	if err := k.CheckMAC("record", []byte("user/alice {scopes:[a]}"), tag); err != nil {
		t.Fatalf("CheckMAC(genuine) = %v", err)
	}
	other := mustKeyring(t, "new "+keyB64(9)+"\n")
	flipped := append([]byte{}, tag...)
	flipped[len(flipped)-1] ^= 1
	renamed := append([]byte{}, tag...)
	renamed[2] = 'N'
	for _, tc := range []struct {
		name    string
		k       *Keyring
		purpose string
		msg     string
		tag     []byte
		want    error
	}{
		{"other message", k, "record", "user/alice {scopes:[b]}", tag, ErrMAC},
		{"other purpose", k, "audit", "user/alice {scopes:[a]}", tag, ErrMAC},
		{"other key, same id", other, "record", "user/alice {scopes:[a]}", tag, ErrMAC},
		{"flipped bit", k, "record", "user/alice {scopes:[a]}", flipped, ErrMAC},
		{"unknown key id", k, "record", "user/alice {scopes:[a]}", renamed, ErrUnknownKey},
		{"truncated", k, "record", "user/alice {scopes:[a]}", tag[:len(tag)-1], ErrMalformed},
		{"empty", k, "record", "user/alice {scopes:[a]}", nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.k.CheckMAC(tc.purpose, []byte(tc.msg), tc.tag); !errors.Is(err, tc.want) {
				t.Errorf("CheckMAC = %v, want %v", err, tc.want)
			}
		})
	}
	// An older key's tag still verifies (rotation re-MACs, but reads go on meanwhile).
	oldOnly := mustKeyring(t, "old "+keyB64(1)+"\n")
	old, err := oldOnly.MAC("record", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.CheckMAC("record", []byte("x"), old); err != nil {
		t.Errorf("CheckMAC(old key's tag) = %v", err)
	}
}
