package securefile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestOpenAndReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("hello"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("x"), 0o600)
	os.Chmod(loose, 0o640)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	tests := []struct {
		name    string
		path    string
		limit   int64
		want    string
		wantErr error
	}{
		{"good", good, 100, "hello", nil},
		{"at the limit", good, 5, "hello", nil},
		{"over the limit", good, 4, "", ErrTooLarge},
		{"group-readable", loose, 100, "", ErrUnsafe},
		{"symlink", link, 100, "", ErrUnsafe},
		{"fifo", fifo, 100, "", ErrUnsafe},
		{"directory", dir, 100, "", ErrUnsafe},
		{"missing", filepath.Join(dir, "none"), 100, "", os.ErrNotExist},
	}
	for _, tt := range tests {
		done := make(chan struct{})
		var got []byte
		var err error
		go func() { got, err = ReadFile(tt.path, Secret, tt.limit); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) hangs", tt.name)
		}
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFile(%s) = %q, %v; want %v", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestCheckDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink(private, link)
	for name, c := range map[string]struct {
		path string
		ok   bool
	}{"private": {private, true}, "open": {open, false}, "symlink": {link, false}} {
		if err := CheckDir(c.path, SecretDir); (err == nil) != c.ok {
			t.Errorf("CheckDir(%s) = %v, want ok=%v", name, err, c.ok)
		}
	}
	if err := CheckDir(open, Policy); err != nil {
		t.Errorf("CheckDir(0755, Policy) = %v, want nil", err)
	}
}
