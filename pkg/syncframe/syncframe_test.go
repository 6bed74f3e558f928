package syncframe

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func put(rev int64, key, val string) Frame {
	return Frame{Type: Put, Rev: rev, Key: key, Value: []byte(val)}
}

func encode(t testing.TB, frames ...Frame) *Reader {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, f := range frames {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	return NewReader(&b)
}

func digestOf(frames ...Frame) *Digest {
	d := &Digest{}
	for _, f := range frames {
		d.Add(f.Key, f.Value)
	}
	return d
}

func TestDigest(t *testing.T) {
	t.Parallel()
	a, b := &Digest{}, &Digest{}
	a.Add("t/u/1", []byte(`{"x":1}`))
	a.Add("t/u/2", []byte(`{"x":2}`))
	b.Add("t/u/2", []byte(`{"x":2}`))
	b.Add("t/u/1", []byte(`{"x":1}`))
	if a.String() != b.String() || a.Count() != 2 {
		t.Errorf("digest depends on order: %s vs %s", a, b)
	}
	b.Remove("t/u/1", []byte(`{"x":1}`))
	b.Add("t/u/1", []byte(`{"x":9}`))
	if a.String() == b.String() {
		t.Errorf("digest blind to a changed value")
	}
	b.Remove("t/u/1", []byte(`{"x":9}`))
	b.Remove("t/u/2", []byte(`{"x":2}`))
	if !b.Matches(0, (&Digest{}).String()) {
		t.Errorf("empty after removing all: %s count %d", b, b.Count())
	}
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	p1, p2 := put(7, "b/alice/1", `{"a":1}`), put(7, "t/alice/1", `{"b":2}`)
	good := digestOf(p1, p2).String()
	tests := []struct {
		name    string
		frames  []Frame
		wantErr error
	}{
		{"good", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1, p2, {Type: End, Rev: 7, Count: 2, Digest: good}}, nil},
		{"empty set", []Frame{{Type: Begin, Rev: 3}, {Type: End, Rev: 3, Digest: (&Digest{}).String()}}, nil},
		{"truncated", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1}, ErrTruncated},
		{"no begin", []Frame{p1, p2}, ErrOrder},
		{"reordered", []Frame{{Type: Begin, Rev: 7, Count: 2}, p2, p1, {Type: End, Rev: 7, Count: 2, Digest: good}}, ErrOrder},
		{"duplicated", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1, p1, {Type: End, Rev: 7, Count: 2, Digest: good}}, ErrOrder},
		{"other revision", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1, put(6, "t/alice/1", `{"b":2}`), {Type: End, Rev: 7, Count: 2, Digest: good}}, ErrOrder},
		{"count mismatch", []Frame{{Type: Begin, Rev: 7, Count: 3}, p1, p2, {Type: End, Rev: 7, Count: 3, Digest: good}}, ErrMismatch},
		{"digest mismatch", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1, put(7, "t/alice/1", `{"b":3}`), {Type: End, Rev: 7, Count: 2, Digest: good}}, ErrMismatch},
		{"too many", []Frame{{Type: Begin, Rev: 7, Count: 1}, p1, p2, {Type: End, Rev: 7, Count: 2, Digest: good}}, ErrMismatch},
		{"end at other rev", []Frame{{Type: Begin, Rev: 7, Count: 2}, p1, p2, {Type: End, Rev: 8, Count: 2, Digest: good}}, ErrOrder},
		{"delete inside", []Frame{{Type: Begin, Rev: 7, Count: 1}, {Type: Delete, Rev: 7, Key: "t/a/1"}}, ErrOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			_, _, err := Snapshot(encode(t, tt.frames...), func(f Frame) error { got = append(got, f.Key); return nil })
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
				t.Fatalf("Snapshot(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	commit := func(rev, n int64) Frame { return Frame{Type: Commit, Rev: rev, Count: n} }
	del := func(rev int64, key string) Frame { return Frame{Type: Delete, Rev: rev, Key: key} }
	bm := func(rev int64) Frame { return Frame{Type: Bookmark, Rev: rev, Digest: (&Digest{}).String()} }
	tests := []struct {
		name    string
		frames  []Frame
		want    string // batches and bookmarks handed out, e.g. "11:2 B12"
		wantErr error
	}{
		{"two batches and a bookmark", []Frame{put(11, "t/a/1", "{}"), del(11, "t/a/2"), commit(11, 2), put(12, "t/b/1", "{}"), commit(12, 1), bm(12)}, "11:2 12:1 B12", nil},
		{"duplicate revision dropped", []Frame{put(11, "t/a/1", "{}"), commit(11, 1), put(11, "t/a/1", "{}"), commit(11, 1), put(12, "t/a/1", "{}"), commit(12, 1)}, "11:1 12:1", nil},
		{"already applied dropped", []Frame{put(9, "t/a/1", "{}"), commit(9, 1), put(11, "t/a/1", "{}"), commit(11, 1)}, "11:1", nil},
		{"truncated batch", []Frame{put(11, "t/a/1", "{}"), commit(11, 1), put(12, "t/a/1", "{}")}, "11:1", ErrTruncated},
		{"mixed revisions", []Frame{put(11, "t/a/1", "{}"), put(12, "t/a/2", "{}"), commit(12, 2)}, "", ErrOrder},
		{"commit count short", []Frame{put(11, "t/a/1", "{}"), put(11, "t/a/2", "{}"), commit(11, 1)}, "", ErrMismatch},
		{"commit of nothing", []Frame{commit(11, 0)}, "", ErrMismatch},
		{"bookmark inside batch", []Frame{put(11, "t/a/1", "{}"), bm(11)}, "", ErrOrder},
		{"bookmark going back", []Frame{put(11, "t/a/1", "{}"), commit(11, 1), bm(10)}, "11:1", ErrOrder},
		{"snapshot frame", []Frame{{Type: Begin, Rev: 11}}, "", ErrOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := NewWatch(encode(t, tt.frames...), 10)
			var got []string
			var err error
			for {
				var b *Batch
				var f *Frame
				b, f, err = w.Next()
				if err != nil {
					break
				}
				if b != nil {
					got = append(got, itoa(b.Rev)+":"+itoa(int64(len(b.Frames))))
				} else {
					got = append(got, "B"+itoa(f.Rev))
				}
			}
			if err == io.EOF {
				err = nil
			}
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
				t.Fatalf("Watch(%s) error = %v, want %v", tt.name, err, tt.wantErr)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("Watch(%s) handed out %q, want %q", tt.name, g, tt.want)
			}
		})
	}
}

func TestReaderRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"not json":        "hello\n",
		"unknown type":    `{"type":"wat","rev":1}` + "\n",
		"unknown field":   `{"type":"commit","rev":1,"extra":1}` + "\n",
		"put no value":    `{"type":"put","rev":1,"key":"t/a/1"}` + "\n",
		"put array value": `{"type":"put","rev":1,"key":"t/a/1","value":[1]}` + "\n",
		"bad key":         `{"type":"put","rev":1,"key":"x/a/1","value":{}}` + "\n",
		"slash in user":   `{"type":"delete","rev":1,"key":"t/a/b/1"}` + "\n",
		"control in key":  `{"type":"delete","rev":1,"key":"t/a\u0001/1"}` + "\n",
		"negative rev":    `{"type":"commit","rev":-1}` + "\n",
		"bad digest":      `{"type":"bookmark","rev":1,"digest":"xyz"}` + "\n",
		"anchor seq 0":    `{"type":"bookmark","rev":1,"digest":"%[1]s","audit":{"seq":0,"hash":"ab"}}` + "\n",
		"anchor not hex":  `{"type":"bookmark","rev":1,"digest":"%[1]s","audit":{"seq":1,"hash":"xyz"}}` + "\n",
		"anchor no hash":  `{"type":"bookmark","rev":1,"digest":"%[1]s","audit":{"seq":1}}` + "\n",
		"anchor too long": `{"type":"bookmark","rev":1,"digest":"%[1]s","audit":{"seq":1,"hash":"` + strings.Repeat("ab", 67) + `"}}` + "\n",
		"unterminated":    `{"type":"commit","rev":1}`,
		"huge line":       `{"type":"put","rev":1,"key":"t/a/1","value":{"x":"` + strings.Repeat("a", MaxLine) + `"}}` + "\n",
	}
	for name, in := range tests {
		in = strings.ReplaceAll(in, "%[1]s", strings.Repeat("0", 64))
		if _, err := NewReader(strings.NewReader(in)).Next(); err == nil || err == io.EOF {
			t.Errorf("Next(%s) = %v, want an error", name, err)
		}
	}
	good := `{"type":"bookmark","rev":1,"digest":"` + strings.Repeat("0", 64) + `","audit":{"seq":7,"hash":"0102ab"}}` + "\n"
	if f, err := NewReader(strings.NewReader(good)).Next(); err != nil || f.Audit == nil || f.Audit.Seq != 7 {
		t.Errorf("Next(bookmark with an anchor) = %+v, %v", f, err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(`{"type":"put","rev":3,"key":"t/alice/1","value":{"a":1}}` + "\n" + `{"type":"commit","rev":3,"count":1}` + "\n"))
	f.Add([]byte(`{"type":"begin","rev":3,"count":0}` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		w := NewWatch(NewReader(bytes.NewReader(in)), 0)
		last := int64(0)
		for i := 0; i < 1000; i++ {
			b, bm, err := w.Next()
			if err != nil {
				return
			}
			rev := int64(0)
			if b != nil {
				rev = b.Rev
				for _, f := range b.Frames {
					if f.Rev != b.Rev || f.Validate() != nil {
						t.Fatalf("batch %d holds frame %+v", b.Rev, f)
					}
				}
			} else {
				rev = bm.Rev
			}
			if rev < last || (b != nil && rev == last) {
				t.Fatalf("revision went from %d to %d", last, rev)
			}
			last = rev
		}
	})
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
