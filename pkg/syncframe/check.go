package syncframe

import (
	"fmt"
	"io"
)

// Snapshot reads and checks a whole snapshot: begin, put frames in strictly increasing key
// order all at the begin revision, end with the same revision, the right count and the digest
// of what came. Each put is handed to fn as it arrives, so a caller can write it to a staging
// area; the caller must only switch to that area when Snapshot returns nil.
func Snapshot(r *Reader, fn func(Frame) error) (rev int64, d *Digest, err error) {
	f, err := r.Next()
	if err == io.EOF {
		return 0, nil, fmt.Errorf("empty snapshot: %w", ErrTruncated)
	}
	if err != nil {
		return 0, nil, err
	}
	if f.Type == Error {
		return 0, nil, fmt.Errorf("registry: %s: %s", f.Code, clip(f.Message))
	}
	if f.Type != Begin {
		return 0, nil, fmt.Errorf("snapshot starts with %q: %w", f.Type, ErrOrder)
	}
	rev, want, epoch := f.Rev, f.Count, f.Epoch
	d = &Digest{}
	last := ""
	for {
		f, err := r.Next()
		if err == io.EOF {
			return 0, nil, fmt.Errorf("snapshot at %d ended after %d of %d records: %w", rev, d.Count(), want, ErrTruncated)
		}
		if err != nil {
			return 0, nil, err
		}
		switch f.Type {
		case Put:
			if f.Rev != rev {
				return 0, nil, fmt.Errorf("snapshot at %d has a record of revision %d: %w", rev, f.Rev, ErrOrder)
			}
			if f.Key <= last {
				return 0, nil, fmt.Errorf("snapshot keys not strictly increasing at %q: %w", clip(f.Key), ErrOrder)
			}
			last = f.Key
			d.Add(f.Key, f.Value)
			if d.Count() > want {
				return 0, nil, fmt.Errorf("snapshot at %d has more than %d records: %w", rev, want, ErrMismatch)
			}
			if err := fn(f); err != nil {
				return 0, nil, err
			}
		case End:
			if f.Rev != rev || f.Epoch != epoch {
				return 0, nil, fmt.Errorf("snapshot began at %d of epoch %q and ends at %d of epoch %q: %w", rev, clip(epoch), f.Rev, clip(f.Epoch), ErrOrder)
			}
			if !d.Matches(f.Count, f.Digest) || f.Count != want {
				return 0, nil, fmt.Errorf("snapshot at %d: got %d records, digest %s; end says %d, %s: %w",
					rev, d.Count(), d.String(), f.Count, f.Digest, ErrMismatch)
			}
			return rev, d, nil
		case Error:
			return 0, nil, fmt.Errorf("registry: %s: %s", f.Code, clip(f.Message))
		default:
			return 0, nil, fmt.Errorf("%q frame inside a snapshot: %w", f.Type, ErrOrder)
		}
	}
}

// Batch is the put and delete frames of one revision, complete (its commit was read).
type Batch struct {
	Rev    int64
	Frames []Frame
}

// Watch reads a watch stream after the applied revision and hands out complete batches and
// bookmarks in order. A batch at or below the last revision handed out is a duplicate: it is
// read to its commit and dropped (delivery is idempotent by revision). Anything else out of order
// is an error, and a stream that ends inside a batch loses that batch.
type Watch struct {
	r    *Reader
	last int64
}

// NewWatch starts reading after revision applied.
func NewWatch(r *Reader, applied int64) *Watch { return &Watch{r: r, last: applied} }

// Next returns the next complete batch, or a bookmark (with batch nil); io.EOF at a clean end.
func (w *Watch) Next() (*Batch, *Frame, error) {
	var cur *Batch
	for {
		f, err := w.r.Next()
		if err == io.EOF {
			if cur != nil {
				return nil, nil, fmt.Errorf("stream ended inside revision %d: %w", cur.Rev, ErrTruncated)
			}
			return nil, nil, io.EOF
		}
		if err != nil {
			return nil, nil, err
		}
		switch f.Type {
		case Put, Delete:
			if cur == nil {
				cur = &Batch{Rev: f.Rev}
			} else if f.Rev != cur.Rev {
				return nil, nil, fmt.Errorf("revision %d frame inside revision %d: %w", f.Rev, cur.Rev, ErrOrder)
			}
			cur.Frames = append(cur.Frames, f)
		case Commit:
			if cur == nil || f.Rev != cur.Rev || f.Count != int64(len(cur.Frames)) {
				n, r := 0, int64(0)
				if cur != nil {
					n, r = len(cur.Frames), cur.Rev
				}
				return nil, nil, fmt.Errorf("commit of %d (count %d) after %d frames of %d: %w", f.Rev, f.Count, n, r, ErrMismatch)
			}
			if cur.Rev <= w.last {
				cur = nil // a duplicate: already applied
				continue
			}
			w.last = cur.Rev
			return cur, nil, nil
		case Bookmark:
			if cur != nil {
				return nil, nil, fmt.Errorf("bookmark inside revision %d: %w", cur.Rev, ErrOrder)
			}
			if f.Rev < w.last {
				return nil, nil, fmt.Errorf("bookmark at %d after revision %d: %w", f.Rev, w.last, ErrOrder)
			}
			w.last = f.Rev
			return nil, &f, nil
		case Error:
			return nil, nil, fmt.Errorf("registry: %s: %s", f.Code, clip(f.Message))
		default:
			return nil, nil, fmt.Errorf("%q frame in a watch stream: %w", f.Type, ErrOrder)
		}
	}
}
