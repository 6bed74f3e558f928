package admin

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// GAName is the name of a token imported from a google-authenticator file.
const GAName = "google-authenticator"

// maxGAFile bounds a google-authenticator file; the module itself allows 1 kB.
const maxGAFile = 64 * 1024

// GAFile is what a google-authenticator secret file (~/.google_authenticator) holds:
//
//	JBSWY3DPEHPK3PXP          the base32 secret, first line
//	" RATE_LIMIT 3 30 ...     options: a double quote, a space, an upper-case name, parameters
//	" WINDOW_SIZE 17
//	" DISALLOW_REUSE ...
//	" TOTP_AUTH               time-based; HOTP_COUNTER instead means counter-based
//	12345678                  one-time scratch codes, eight digits each
type GAFile struct {
	Secret []byte
	// Period is STEP_SIZE (30 when absent).
	Period int
	// Scratch are the scratch codes, in file order.
	Scratch []string
	// Ignored names the options that have no meaning here (our policy decides windows, rate
	// limits and reuse), for the admin's information.
	Ignored []string
}

// ParseGA parses a google-authenticator secret file. It refuses counter-based (HOTP) files, files
// without TOTP_AUTH (the module would not accept a time-based code from them either) and files
// with OTP_DISABLED. Errors name the line, never its text.
func ParseGA(data []byte) (GAFile, error) {
	f := GAFile{Period: 30}
	if len(data) > maxGAFile {
		return f, fmt.Errorf("larger than %d bytes: not a google-authenticator file", maxGAFile)
	}
	lines := strings.Split(string(data), "\n")
	secretLine := strings.TrimSpace(strings.TrimSuffix(lines[0], "\r"))
	if secretLine == "" {
		return f, errors.New("line 1: no secret")
	}
	secret, err := totp.DecodeSecret(secretLine)
	switch {
	case errors.Is(err, totp.ErrSecretSize):
		return f, errors.New("line 1: secret has an unsupported length")
	case err != nil:
		return f, errors.New("line 1: secret is not valid base32")
	}
	f.Secret = secret
	var totpAuth bool
	seen := map[string]bool{}
	for i, line := range lines[1:] {
		n := i + 2
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		switch {
		case line == "":
			continue
		case line[0] == '"':
			fields := strings.Fields(line[1:])
			if len(fields) == 0 {
				return f, fmt.Errorf("line %d: empty option", n)
			}
			name := fields[0]
			if !optionName(name) {
				return f, fmt.Errorf("line %d: not an option name", n)
			}
			switch name {
			case "HOTP_COUNTER":
				return f, fmt.Errorf("line %d: HOTP_COUNTER: counter-based (HOTP) tokens are %w; pam-totp is TOTP only", n, ErrUnsupported)
			case "OTP_DISABLED":
				return f, fmt.Errorf("line %d: OTP_DISABLED: the file says the user has no one-time passwords", n)
			case "TOTP_AUTH":
				totpAuth = true
			case "STEP_SIZE":
				if len(fields) != 2 {
					return f, fmt.Errorf("line %d: STEP_SIZE needs one number", n)
				}
				p, err := strconv.Atoi(fields[1])
				if err != nil || p < totp.MinPeriod || p > totp.MaxPeriod {
					return f, fmt.Errorf("line %d: STEP_SIZE must be %d to %d seconds", n, totp.MinPeriod, totp.MaxPeriod)
				}
				f.Period = p
			default:
				// WINDOW_SIZE, RATE_LIMIT and DISALLOW_REUSE are policy here (window, rate_limit;
				// reuse is always refused); anything else is some fork's extension.
				if !seen[name] {
					f.Ignored = append(f.Ignored, name)
				}
			}
			seen[name] = true
		case isScratch(line):
			f.Scratch = append(f.Scratch, line)
		default:
			return f, fmt.Errorf("line %d: neither an option nor an eight-digit scratch code", n)
		}
	}
	if !totpAuth {
		return f, fmt.Errorf("no TOTP_AUTH option: the file does not describe a time-based token (%w)", ErrUnsupported)
	}
	return f, nil
}

func optionName(s string) bool {
	if !strings.Contains(s, "_") {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && c != '_' {
			return false
		}
	}
	return true
}

func isScratch(s string) bool {
	if len(s) != 8 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// GAResult says what ImportGA did.
type GAResult struct {
	Token token.Token
	// Already is set when the user already had a token with this secret; nothing was written.
	Already bool
	// Scratch is the number of scratch codes stored as backup codes, Replaced the number of
	// backup codes the user had before, which they replace.
	Scratch, Replaced int
}

// ImportGA writes f as one active token of user named GAName, and its scratch codes as the user's
// backup codes (replacing any the user had). Importing the same file again changes nothing.
func (a *Admin) ImportGA(user string, f GAFile) (GAResult, error) {
	var res GAResult
	if err := token.ValidUser(user); err != nil {
		return res, err
	}
	p := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: f.Period}
	if err := p.Validate(); err != nil {
		return res, err
	}
	var recs []token.BackupCode
	now := a.Now().UTC().Truncate(time.Second)
	for _, c := range f.Scratch {
		rec, err := backupcode.Record(a.Rand, user, c, now)
		if err != nil {
			return res, err
		}
		recs = append(recs, rec)
	}
	if err := a.prepare(); err != nil {
		return res, err
	}
	err := a.Tokens.Update(func(x *store.TokensTx) error {
		toks, err := x.UserTokens(user)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if len(t.Secret) == len(f.Secret) && subtle.ConstantTimeCompare(t.Secret, f.Secret) == 1 {
				res.Token, res.Already = t, true
				return nil
			}
		}
		id, err := token.NewID(a.Rand, func(id string) bool { return token.HasID(toks, id) })
		if err != nil {
			return err
		}
		res.Token = token.Token{
			User: user, ID: id, Name: GAName,
			Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period,
			Secret: f.Secret, State: token.Active, Created: now,
		}
		if err := x.PutToken(res.Token); err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		old, err := x.BackupCodes(user)
		if err != nil {
			return err
		}
		res.Scratch, res.Replaced = len(recs), len(old)
		return x.ReplaceBackupCodes(user, recs)
	})
	if err != nil || res.Already || len(recs) == 0 {
		return res, err
	}
	if err := a.State.Update(func(x *store.StateTx) error { return x.ForgetBackupUsed(user) }); err != nil {
		return res, fmt.Errorf("token imported, but the old backup codes' used marks were not cleared: %w", err)
	}
	return res, nil
}

// OpenInput opens a file to import: never through a symlink (O_NOFOLLOW), never a FIFO, device
// or directory (checked on the open descriptor), and without blocking on a FIFO in the open. "-"
// is standard input. Unlike package securefile it does not insist on root ownership: a
// google-authenticator file belongs to its user.
func OpenInput(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if err == unix.ELOOP {
			return nil, fmt.Errorf("%s: is a symlink; give the file itself", path)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadGAFile opens and parses a google-authenticator file (OpenInput's rules).
func ReadGAFile(path string) (GAFile, error) {
	f, err := OpenInput(path)
	if err != nil {
		return GAFile{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(bufio.NewReader(f), maxGAFile+1))
	if err != nil {
		return GAFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	ga, err := ParseGA(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if err != nil {
		return ga, fmt.Errorf("%s: %w", path, err)
	}
	sort.Strings(ga.Ignored)
	return ga, nil
}
