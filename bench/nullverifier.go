package main

import (
	"net"
	"os"
	"path/filepath"

	"github.com/pam-totp/pam-totp/pkg/protocol"
)

// nullVerifier is a resident verifier that decides nothing: it reads the module's request frame
// and answers "D success" at once, in this (otherwise idle) driver process. Logins through it
// measure what pam_totp.so itself costs on the socket path (NSS lookups, path and socket checks,
// connect, the frames): the lowest a login through any resident verifier can take on this
// machine, whatever the verifier does.
type nullVerifier struct {
	ln   *net.UnixListener
	Path string
}

// startNullVerifier listens on dir/null.sock (dir is made root 0700, the socket 0600, as
// pam_totp.so requires).
func startNullVerifier(dir string) (*nullVerifier, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "null.sock")
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	v := &nullVerifier{ln: ln, Path: path}
	go v.serve()
	return v, nil
}

func (v *nullVerifier) serve() {
	for {
		c, err := v.ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			conn := protocol.NewConn(c)
			if _, err := conn.ReadRequest(); err == nil {
				_ = conn.Done(protocol.Success)
			}
		}()
	}
}

func (v *nullVerifier) Close() error { return v.ln.Close() }
