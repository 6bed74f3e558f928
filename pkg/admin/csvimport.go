package admin

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// DefaultChunk is how many tokens one write transaction of an import holds: large enough for
// thousands of tokens a second, small enough that a login waits milliseconds for the lock.
const DefaultChunk = 1000

// maxCSVLine bounds one line of an import file.
const maxCSVLine = 4096

// LineError is one invalid line of an import file. Msg names the field, never its text.
type LineError struct {
	Line int
	Msg  string
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// CSVRecord is one valid line of a CSV import.
type CSVRecord struct {
	Line   int
	User   string
	Secret []byte
	Name   string
}

// ParseCSV reads lines "user,base32secret[,name]". Blank lines and lines starting with '#' are
// skipped, CRLF line ends are fine, spaces around fields are trimmed, and the name is the rest of
// the line (it may hold commas). A first line "user,secret[,name]" is taken as a header. Every
// invalid line is reported; the error is only for a failed read.
func ParseCSV(r io.Reader) ([]CSVRecord, []LineError, error) {
	var (
		recs []CSVRecord
		bad  []LineError
		n    int
		seen bool // a data line (or header) was seen
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxCSVLine), maxCSVLine)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.SplitN(line, ",", 3)
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if !seen {
			seen = true
			if len(fields) >= 2 && strings.EqualFold(fields[0], "user") && strings.EqualFold(fields[1], "secret") {
				continue
			}
		}
		rec, msg := csvRecord(fields)
		if msg != "" {
			bad = append(bad, LineError{Line: n, Msg: msg})
			continue
		}
		rec.Line = n
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxCSVLine)
		}
		return nil, nil, fmt.Errorf("read after line %d: %w", n, err)
	}
	return recs, bad, nil
}

// csvRecord validates one line's fields; the message never repeats a field's text.
func csvRecord(f []string) (CSVRecord, string) {
	if len(f) < 2 {
		return CSVRecord{}, "want user,secret[,name]"
	}
	rec := CSVRecord{User: f[0]}
	if rec.User == "" {
		return rec, "user name is empty"
	}
	if token.ValidUser(rec.User) != nil || token.Clean(rec.User) != rec.User || strings.ContainsAny(rec.User, " \t") {
		return rec, "user name is not valid (at most 256 printable characters, no spaces)"
	}
	if f[1] == "" {
		return rec, "secret is empty"
	}
	secret, err := totp.DecodeSecret(f[1])
	switch {
	case errors.Is(err, totp.ErrSecretSize):
		return rec, fmt.Sprintf("secret has an unsupported length (want %d to %d bytes of base32)",
			totp.MinSecretLen, totp.MaxSecretLen)
	case err != nil:
		return rec, "secret is not valid base32"
	}
	rec.Secret = secret
	if len(f) == 3 {
		rec.Name = f[2]
		if err := token.CheckName(rec.Name); err != nil {
			return rec, err.Error()
		}
	}
	return rec, ""
}

// ImportOptions tune ImportCSV.
type ImportOptions struct {
	// Params apply to every imported token (zero means totp.DefaultParams).
	Params totp.Params
	// SkipInvalid imports the valid lines even when some are invalid.
	SkipInvalid bool
	// Chunk is the number of tokens per write transaction (0 means DefaultChunk).
	Chunk int
	// DefaultName names tokens whose line has no name (empty means "imported").
	DefaultName string
}

// ImportReport says what an import did.
type ImportReport struct {
	Added int
	// Duplicates are lines whose user already had a token with the same secret; they are skipped,
	// so running an import twice adds nothing.
	Duplicates int
	// Invalid are the lines that were not imported.
	Invalid []LineError
}

// ImportCSV validates a whole CSV file (ParseCSV) and, when every line is valid or o.SkipInvalid
// is set, writes its tokens as active, sorted by user, in transactions of o.Chunk tokens. With
// invalid lines and no SkipInvalid it writes nothing and returns ErrInvalidLines; the lines are in
// the report.
func (a *Admin) ImportCSV(r io.Reader, o ImportOptions) (ImportReport, error) {
	var rep ImportReport
	if o.Params == (totp.Params{}) {
		o.Params = totp.DefaultParams
	}
	if err := o.Params.Validate(); err != nil {
		return rep, err
	}
	if o.Chunk <= 0 {
		o.Chunk = DefaultChunk
	}
	if o.DefaultName == "" {
		o.DefaultName = "imported"
	}
	recs, bad, err := ParseCSV(r)
	if err != nil {
		return rep, err
	}
	rep.Invalid = bad
	if len(bad) > 0 && !o.SkipInvalid {
		return rep, fmt.Errorf("%d %w", len(bad), ErrInvalidLines)
	}
	if len(recs) == 0 {
		return rep, nil
	}
	if err := a.prepare(); err != nil {
		return rep, err
	}
	now := a.Now().UTC().Truncate(time.Second)
	toks := make([]token.Token, len(recs))
	ids := make([]byte, token.IDLen*len(recs))
	if _, err := io.ReadFull(a.Rand, ids); err != nil {
		return rep, fmt.Errorf("random token ids: %w", err)
	}
	for i, rec := range recs {
		name := rec.Name
		if name == "" {
			name = o.DefaultName
		}
		toks[i] = token.Token{
			User: rec.User, ID: fmt.Sprintf("%x", ids[i*token.IDLen:(i+1)*token.IDLen]), Name: name,
			Algorithm: o.Params.Algorithm, Digits: o.Params.Digits, Period: o.Params.Period,
			Secret: rec.Secret, State: token.Active, Created: now,
		}
	}
	// bbolt inserts fastest in key order ("user\x00id"); a stable sort keeps a user's lines in
	// file order when ids tie.
	sort.SliceStable(toks, func(i, j int) bool {
		if toks[i].User != toks[j].User {
			return toks[i].User < toks[j].User
		}
		return toks[i].ID < toks[j].ID
	})
	for start := 0; start < len(toks); start += o.Chunk {
		chunk := toks[start:min(start+o.Chunk, len(toks))]
		added, dups := 0, 0
		err := a.Tokens.Update(func(x *store.TokensTx) error {
			added, dups = 0, 0
			var user string
			var have []token.Token
			for _, t := range chunk {
				if t.User != user || have == nil {
					user = t.User
					var err error
					if have, err = x.UserTokens(user); err != nil {
						return err
					}
					if have == nil {
						have = []token.Token{}
					}
				}
				if hasSecret(have, t.Secret) {
					dups++
					continue
				}
				if token.HasID(have, t.ID) {
					id, err := token.NewID(a.Rand, func(id string) bool { return token.HasID(have, id) })
					if err != nil {
						return err
					}
					t.ID = id
				}
				if err := x.PutToken(t); err != nil {
					return fmt.Errorf("token %s of %s: %w", t.ID, token.Clean(t.User), err)
				}
				have = append(have, t)
				added++
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("write tokens (%d written before this): %w", rep.Added, err)
		}
		rep.Added += added
		rep.Duplicates += dups
	}
	return rep, nil
}

func hasSecret(toks []token.Token, secret []byte) bool {
	for _, t := range toks {
		if len(t.Secret) == len(secret) && subtle.ConstantTimeCompare(t.Secret, secret) == 1 {
			return true
		}
	}
	return false
}
