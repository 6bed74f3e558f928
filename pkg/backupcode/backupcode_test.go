package backupcode

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

func TestNewAndMatch(t *testing.T) {
	t.Parallel()
	plain, recs, err := New(rand.Reader, "alice", Count, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != Count || len(recs) != Count {
		t.Fatalf("New = %d codes, %d records, want %d", len(plain), len(recs), Count)
	}
	seen := map[string]bool{}
	for i, p := range plain {
		if len(strings.ReplaceAll(p, "-", "")) != Length || seen[p] {
			t.Errorf("code %d = %q: want %d characters, unique", i, p, Length)
		}
		seen[p] = true
		norm, ok := Normalize(p)
		if !ok || !Match(norm, recs[i]) {
			t.Errorf("Match(code %d, its record) = false", i)
		}
		if i > 0 && Match(norm, recs[i-1]) {
			t.Errorf("code %d matches record %d", i, i-1)
		}
		if bytes.Contains(recs[i].Hash, []byte(norm)) || bytes.Contains(recs[i].Salt, []byte(norm)) {
			t.Errorf("record %d holds the code in clear", i)
		}
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"7k2q-m9xd-4hpt-b1zc", "7k2qm9xd4hptb1zc", true},
		{" 7K2Q M9XD 4HPT B1ZC ", "7k2qm9xd4hptb1zc", true},
		{"7k2q-m9xd-4hpt-bIzc", "7k2qm9xd4hptb1zc", true}, // I read as 1
		{"0O0o-lLiI", "00001111", true},
		{"12345678", "12345678", true},
		{"12345", "", false},
		{"", "", false},
		{"7k2q-m9xd-4hpt-b1zu", "", false}, // u is not in the alphabet
		{"abc\x00defgh", "", false},
		{strings.Repeat("a", MaxLen+1), "", false},
	}
	for _, tt := range tests {
		got, ok := Normalize(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Normalize(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("7k2q-m9xd-4hpt-b1zc")
	f.Add("12345678")
	f.Fuzz(func(t *testing.T, in string) {
		norm, ok := Normalize(in)
		if !ok {
			return
		}
		for i := 0; i < len(norm); i++ {
			if !strings.ContainsRune(alphabet, rune(norm[i])) {
				t.Fatalf("Normalize(%q) = %q: character outside the alphabet", in, norm)
			}
		}
		if again, ok := Normalize(norm); !ok || again != norm {
			t.Fatalf("Normalize is not idempotent on %q", in)
		}
	})
}
