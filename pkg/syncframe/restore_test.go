package syncframe

import (
	"errors"
	"testing"
)

func TestParseDigest(t *testing.T) {
	t.Parallel()
	var d Digest
	d.Add("t/alice/a", []byte(`{"x":1}`))
	d.Add("t/bob/b", []byte(`{"x":2}`))
	tests := []struct {
		name   string
		count  int64
		digest string
		err    bool
	}{
		{name: "round trip", count: d.Count(), digest: d.String()},
		{name: "empty set", count: 0, digest: (&Digest{}).String()},
		{name: "short", count: 1, digest: "abc", err: true},
		{name: "not hex", count: 1, digest: "zz" + d.String()[2:], err: true},
		{name: "negative count", count: -1, digest: d.String(), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDigest(tt.count, tt.digest)
			if tt.err {
				if !errors.Is(err, ErrFrame) {
					t.Errorf("ParseDigest(%d, %q) = %v, want ErrFrame", tt.count, tt.digest, err)
				}
				return
			}
			if err != nil || !got.Matches(tt.count, tt.digest) {
				t.Fatalf("ParseDigest(%d, %q) = %v, %v", tt.count, tt.digest, got, err)
			}
		})
	}
	// A restored digest keeps counting like the original.
	r, _ := ParseDigest(d.Count(), d.String())
	r.Remove("t/alice/a", []byte(`{"x":1}`))
	var want Digest
	want.Add("t/bob/b", []byte(`{"x":2}`))
	if !r.Matches(want.Count(), want.String()) {
		t.Errorf("restored digest after Remove = %d/%s, want %d/%s", r.Count(), r, want.Count(), want.String())
	}
}
