package tokenimport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/totp"
	"golang.org/x/sys/unix"
)

// ErrUnsupported: an import file describes something pam-totp does not do (HOTP).
var ErrUnsupported = errors.New("not supported")

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
