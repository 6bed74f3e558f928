package tokenimport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

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

// ParseCSV reads lines "user,base32secret[,name]" (ScanCSV) and returns every valid record and
// every invalid line; the error is only for a failed read.
func ParseCSV(r io.Reader) ([]CSVRecord, []LineError, error) {
	var recs []CSVRecord
	bad, err := ScanCSV(r, func(rec CSVRecord) error {
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return recs, bad, nil
}

// ScanCSV reads lines "user,base32secret[,name]" and calls fn with each valid record in file
// order, so that a large import never holds all of its records. Blank lines and lines starting
// with '#' are skipped, CRLF line ends are fine, spaces around fields are trimmed, and the name is
// the rest of the line (it may hold commas). A first line "user,secret[,name]" is taken as a
// header. Every invalid line is reported; the error is a failed read, or fn's error (returned as
// it is) that stopped the scan.
func ScanCSV(r io.Reader, fn func(CSVRecord) error) ([]LineError, error) {
	var (
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
		if err := fn(rec); err != nil {
			return bad, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxCSVLine)
		}
		return nil, fmt.Errorf("read after line %d: %w", n, err)
	}
	return bad, nil
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
