// Package securefile opens the files that decide who logs in: token and state databases (secrets,
// root 0600 in a root 0700 directory) and configuration (root-owned, not writable by others).
//
// Every open refuses symlinks (O_NOFOLLOW), FIFOs and devices (O_NONBLOCK, then fstat on the open
// descriptor, so the check and the use see the same inode), files owned by anyone but the
// effective user (root in production: the helper always runs as root), and files whose mode grants
// more than the rule allows.
package securefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Rule says which permission bits a file or directory must not have.
type Rule struct {
	// Forbidden are the mode bits that must be clear, e.g. 0o077 for "0600 at most".
	Forbidden fs.FileMode
	// What names the kind of file in errors ("token store", "config").
	What string
}

// Common rules.
var (
	// Secret is for files holding secrets: owner read/write only.
	Secret = Rule{Forbidden: 0o077, What: "secret file"}
	// SecretDir is for the directory holding them: owner only.
	SecretDir = Rule{Forbidden: 0o077, What: "secret directory"}
	// Policy is for configuration and executables: nobody but the owner may write.
	Policy = Rule{Forbidden: 0o022, What: "policy file"}
)

// Sentinel errors; wrapped with the path and the detail.
var (
	// ErrUnsafe means the file exists but fails an ownership, type or mode check.
	ErrUnsafe = errors.New("unsafe file")
)

// Open opens path with flag (O_NOFOLLOW, O_CLOEXEC and, for the open itself, O_NONBLOCK added),
// creating it with perm when flag has O_CREATE, and checks the open descriptor against rule.
func Open(path string, flag int, perm fs.FileMode, rule Rule) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm.Perm()))
	if err != nil {
		if err == unix.ELOOP {
			return nil, fmt.Errorf("%s %s: is a symlink: %w", rule.What, path, ErrUnsafe)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := check(path, &st, unix.S_IFREG, rule); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Blocking I/O from here on; O_NONBLOCK only kept a FIFO from hanging the open.
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK)
	}
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CheckDir checks that path is a directory (not a symlink to one) that passes rule.
func CheckDir(path string, rule Rule) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return check(path, &st, unix.S_IFDIR, rule)
}

// MkdirAll creates path (0700) if it is missing, then checks it with CheckDir.
func MkdirAll(path string, rule Rule) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	return CheckDir(path, rule)
}

func check(path string, st *unix.Stat_t, wantType uint32, rule Rule) error {
	if typ := st.Mode & unix.S_IFMT; typ != wantType {
		kind := "a regular file"
		if wantType == unix.S_IFDIR {
			kind = "a directory"
		}
		return fmt.Errorf("%s %s: not %s (%s): %w", rule.What, path, kind, typeName(typ), ErrUnsafe)
	}
	if want := uint32(os.Geteuid()); st.Uid != want {
		return fmt.Errorf("%s %s: owned by uid %d, want %d: %w", rule.What, path, st.Uid, want, ErrUnsafe)
	}
	if bad := fs.FileMode(st.Mode) & rule.Forbidden & fs.ModePerm; bad != 0 {
		return fmt.Errorf("%s %s: mode %04o grants %04o to others: %w", rule.What, path,
			st.Mode&0o7777, uint32(bad), ErrUnsafe)
	}
	return nil
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	}
	return "unknown type"
}

// ErrTooLarge means a file is larger than the caller's limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile opens path read-only with Open and reads it whole; a file over limit bytes is
// ErrTooLarge (nothing of it is returned).
func ReadFile(path string, rule Rule, limit int64) ([]byte, error) {
	f, err := Open(path, os.O_RDONLY, 0, rule)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, fmt.Errorf("%s %s: larger than %d bytes: %w", rule.What, path, limit, ErrTooLarge)
	}
	return data, nil
}
