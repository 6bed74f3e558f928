package rootsock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeHandler struct{}

func (fakeHandler) BeginEnrollmentFor(_ context.Context, user, name string) (Pending, error) {
	switch user {
	case "refused":
		return Pending{}, &Error{Name: "io.github.pamtotp.Sync1.Error.Refused", Message: "a bootstrap code is required"}
	case "broken":
		return Pending{}, errors.New("store unreadable")
	}
	return Pending{ID: "p1", URI: "otpauth://totp/x?secret=AAAA", QR: "▀▄", Expires: 42}, nil
}

func (fakeHandler) FinishEnrollmentFor(_ context.Context, user, id, code string) (Finished, error) {
	return Finished{Status: "active", BackupCodes: []string{"b1"}}, nil
}

// listen makes a socket in a fresh root 0700 directory.
func listen(t *testing.T) (string, *net.UnixListener) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the socket must be root's: run as root")
	}
	path := filepath.Join(t.TempDir(), "run", FileName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s) = %v", path, err)
	}
	return path, ln
}

// serve starts Serve with fakeHandler on a fresh socket.
func serve(t *testing.T) string {
	t.Helper()
	path, ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, fakeHandler{}, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	c := &Client{Path: serve(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, err := c.BeginFor(ctx, "alice", "")
	if err != nil || p.ID != "p1" || p.QR != "▀▄" || p.Expires != 42 {
		t.Fatalf("BeginFor = %+v, %v; want p1 with its QR code", p, err)
	}
	f, err := c.FinishFor(ctx, "alice", "p1", "123456")
	if err != nil || f.Status != "active" || len(f.BackupCodes) != 1 {
		t.Fatalf("FinishFor = %+v, %v; want active with a backup code", f, err)
	}
	tests := []struct {
		user, want string
	}{
		{"refused", "io.github.pamtotp.Sync1.Error.Refused: a bootstrap code is required"},
		{"broken", ErrUnavailableName + ": totp-syncd could not do this now; try again"},
	}
	for _, tt := range tests {
		_, err := c.BeginFor(ctx, tt.user, "")
		var re *Error
		if !errors.As(err, &re) || err.Error() != tt.want {
			t.Errorf("BeginFor(%q) = %v, want %q", tt.user, err, tt.want)
		}
		if strings.Contains(err.Error(), "store unreadable") {
			t.Errorf("BeginFor(%q) = %v: an internal error reached the client", tt.user, err)
		}
	}
}

func TestClientRefusesUnsafeSocket(t *testing.T) {
	t.Parallel()
	path := serve(t)
	for _, tt := range []struct {
		name string
		p    string
		mode os.FileMode
	}{{"directory open to others", filepath.Dir(path), 0o755}, {"socket open to others", path, 0o666}} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chmod(tt.p, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := (&Client{Path: path}).BeginFor(context.Background(), "alice", "")
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("BeginFor with %s = %v, want ErrUnsafe", tt.name, err)
			}
			os.Chmod(filepath.Dir(path), 0o700)
			os.Chmod(path, 0o600)
		})
	}
}

// A daemon that accepts and never answers costs the caller its deadline, not a hang.
func TestClientBoundedBySilentDaemon(t *testing.T) {
	t.Parallel()
	path, ln := listen(t)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (&Client{Path: path}).BeginFor(ctx, "alice", "")
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("BeginFor against a silent daemon = %v after %v, want an error at the deadline", err, time.Since(start))
	}
}

func TestPeerUID(t *testing.T) {
	t.Parallel()
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if uid, err := PeerUID(a); err != nil || uid != uint32(os.Geteuid()) {
		t.Errorf("PeerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}

func unixPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "rootsock")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	a, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, nil, err
	}
	b, err := ln.AcceptUnix()
	return a, b, err
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"op":"begin_enrollment_for","user":"alice"}` + "\n"))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		_ = read(strings.NewReader(string(b)), &r)
	})
}
