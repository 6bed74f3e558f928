// Package syncframe is the wire format between totp-registry and totp-syncd (docs/sync-protocol.md):
// NDJSON frames, the record keys, the order-independent digest both sides keep of a node's set,
// and the readers that check a snapshot or a watch stream before anything reaches tokens.db.
//
// Both ends import it; it does no I/O of its own beyond the reader and writer it is handed.
package syncframe

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// Type is a frame's kind.
type Type string

// Frame types.
const (
	Begin    Type = "begin"    // snapshot: first frame, with the pinned revision and the record count
	Put      Type = "put"      // a record (key, value) as of revision Rev
	Delete   Type = "delete"   // a record gone at revision Rev
	End      Type = "end"      // snapshot: last frame, with count and digest
	Commit   Type = "commit"   // watch: ends the Count put/delete frames of revision Rev
	Bookmark Type = "bookmark" // watch: the node's whole set at Rev has Count records and Digest
	Error    Type = "error"    // the server ends the stream: Code, Message
)

// MaxLine bounds one encoded frame (a token record is a few hundred bytes).
const MaxLine = 64 << 10

// Frame is one line of a sync stream.
type Frame struct {
	Type    Type            `json:"type"`
	Rev     int64           `json:"rev"`
	Key     string          `json:"key,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Count   int64           `json:"count,omitempty"`
	Digest  string          `json:"digest,omitempty"`
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message,omitempty"`
	// Audit is the registry's audit head, on bookmarks (anchor.go).
	Audit *Anchor `json:"audit,omitempty"`
	// Epoch is the registry store's identity (begin, end, bookmark): revisions of one epoch mean
	// nothing in another (docs/sync-protocol.md, "The store's epoch").
	Epoch string `json:"epoch,omitempty"`
}

// Headers of the snapshot and watch answers, the stream's hello: EpochHeader carries the store's
// epoch (before any frame, on errors too), BookmarkIntervalHeader how often a caught-up watch
// stream sends a bookmark (a time.Duration string), from which a node tells a stalled stream.
const (
	EpochHeader            = "Pam-Totp-Epoch"
	BookmarkIntervalHeader = "Pam-Totp-Bookmark-Interval"
)

// Sentinel errors: every one means "stop, drop what this stream gave since the last complete
// unit, reconnect".
var (
	ErrFrame     = errors.New("malformed frame")
	ErrOrder     = errors.New("frame out of order")
	ErrTruncated = errors.New("stream ended inside a unit")
	ErrMismatch  = errors.New("count or digest does not match")
)

// Record key kinds.
const (
	KindToken  = 't'
	KindBackup = 'b'
	KindUser   = 'u' // per user: the mark of having enrolled (token.Enrolled), the failures (token.SharedFailures)
)

// EnrolledID and FailuresID are the id parts of a user's token.Enrolled and
// token.SharedFailures record keys.
const (
	EnrolledID = "enrolled"
	FailuresID = "failures"
)

// Key names a record: "KIND/USER/ID" (ParseKey's inverse).
func Key(kind byte, user, id string) string { return string(kind) + "/" + user + "/" + id }

// TokenKey, BackupKey and EnrolledKey name records: "t/USER/ID", "b/USER/ID", "u/USER/enrolled".
func TokenKey(user, id string) string  { return Key(KindToken, user, id) }
func BackupKey(user, id string) string { return Key(KindBackup, user, id) }
func EnrolledKey(user string) string   { return Key(KindUser, user, EnrolledID) }

// FailuresKey names a user's token.SharedFailures record: "u/USER/failures".
func FailuresKey(user string) string { return Key(KindUser, user, FailuresID) }

// UserKeys are the keys of all a user's records start with: "t/USER/", "b/USER/", "u/USER/".
func UserKeys(user string) []string {
	return []string{TokenKey(user, ""), BackupKey(user, ""), Key(KindUser, user, "")}
}

// ParseKey splits a record key. User names and ids contain no '/', NUL or control characters.
func ParseKey(k string) (kind byte, user, id string, err error) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[1] == "" || parts[2] == "" || len(k) > 512 ||
		!(parts[0][0] == KindToken || parts[0][0] == KindBackup || parts[0][0] == KindUser && (parts[2] == EnrolledID || parts[2] == FailuresID)) {
		return 0, "", "", fmt.Errorf("record key %q: %w", clip(k), ErrFrame)
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f {
			return 0, "", "", fmt.Errorf("record key %q: control character: %w", clip(k), ErrFrame)
		}
	}
	return parts[0][0], parts[1], parts[2], nil
}

// Validate checks a frame's shape on its own (order is the readers' business).
func (f *Frame) Validate() error {
	bad := func(why string) error { return fmt.Errorf("%s frame: %s: %w", clip(string(f.Type)), why, ErrFrame) }
	if f.Rev < 0 || f.Count < 0 {
		return bad("negative revision or count")
	}
	if len(f.Epoch) > 64 {
		return bad("epoch over 64 bytes")
	}
	switch f.Type {
	case Put:
		if len(f.Value) == 0 || f.Value[0] != '{' {
			return bad("value must be a JSON object")
		}
		fallthrough
	case Delete:
		if f.Rev == 0 {
			return bad("no revision")
		}
		if _, _, _, err := ParseKey(f.Key); err != nil {
			return err
		}
	case Begin, Commit:
	case End, Bookmark:
		if _, err := parseDigest(f.Digest); err != nil {
			return bad("digest: " + err.Error())
		}
		if f.Audit != nil {
			if err := f.Audit.Validate(); err != nil {
				return err
			}
		}
	case Error:
		if f.Code == "" {
			return bad("no code")
		}
	default:
		return bad("unknown type")
	}
	return nil
}

// Reader reads frames, one JSON object per line, refusing lines over MaxLine.
type Reader struct{ br *bufio.Reader }

// NewReader wraps a stream.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 32<<10)} }

// Next returns the next valid frame; io.EOF at a clean end of stream.
func (r *Reader) Next() (Frame, error) {
	var line []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLine {
			return Frame{}, fmt.Errorf("line over %d bytes: %w", MaxLine, ErrFrame)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return Frame{}, fmt.Errorf("last line not terminated: %w", ErrTruncated)
		}
		if err != nil {
			return Frame{}, err
		}
		break
	}
	var f Frame
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Frame{}, fmt.Errorf("decode frame: %v: %w", err, ErrFrame)
	}
	if err := f.Validate(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Writer writes frames as NDJSON lines.
type Writer struct{ w io.Writer }

// NewWriter wraps a stream.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write encodes one frame as one line.
func (w *Writer) Write(f Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if len(b)+1 > MaxLine {
		return fmt.Errorf("frame for %q over %d bytes: %w", clip(f.Key), MaxLine, ErrFrame)
	}
	_, err = w.w.Write(append(b, '\n'))
	return err
}

// Digest is an order-independent digest of a set of records: the sum, modulo 2^256, of
// SHA-256(key || 0x00 || value) over the records, with their count. Adding and removing one
// record are O(1), so both ends keep it current as changes apply.
type Digest struct {
	sum   big.Int
	count int64
}

var modulus = new(big.Int).Lsh(big.NewInt(1), 256)

func recordHash(key string, value []byte) *big.Int {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(value)
	return new(big.Int).SetBytes(h.Sum(nil))
}

// Add counts a record in.
func (d *Digest) Add(key string, value []byte) {
	d.sum.Add(&d.sum, recordHash(key, value))
	d.sum.Mod(&d.sum, modulus)
	d.count++
}

// Remove takes a record out (it must have been added with the same bytes).
func (d *Digest) Remove(key string, value []byte) {
	d.sum.Sub(&d.sum, recordHash(key, value))
	d.sum.Mod(&d.sum, modulus)
	d.count--
}

// Count is the number of records.
func (d *Digest) Count() int64 { return d.count }

// String is the digest as 64 hex digits.
func (d *Digest) String() string {
	var b [32]byte
	d.sum.FillBytes(b[:])
	return hex.EncodeToString(b[:])
}

// Matches reports whether the set has count records and the given digest.
func (d *Digest) Matches(count int64, digest string) bool {
	return d.count == count && d.String() == strings.ToLower(digest)
}

func parseDigest(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 64 hex digits")
	}
	return b, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
