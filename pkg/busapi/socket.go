package busapi

import (
	"bytes"
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// ServeSocket serves the root-only socket at path (package rootsock) until ctx ends: the PAM
// helper's enrollment at login, the same as BeginEnrollmentFor and FinishEnrollmentFor on the
// bus, with the QR code drawn here so that the helper links no QR code. It returns once the
// socket listens; serving goes on in the background.
func (s *Service) ServeSocket(ctx context.Context, path string) error {
	ln, err := rootsock.Listen(path)
	if err != nil {
		return err
	}
	go func() {
		if err := rootsock.Serve(ctx, ln, rootHandler{s}, s.o.CallTimeout, s.o.Log); err != nil {
			s.o.Log.Warn("root socket stopped", "path", path, "err", err)
		}
	}()
	return nil
}

// rootHandler answers the root socket; its peer is root (rootsock checks SO_PEERCRED).
type rootHandler struct{ s *Service }

var rootCaller = caller{uid: 0, name: "root"}

func (h rootHandler) BeginEnrollmentFor(ctx context.Context, user, name string) (rootsock.Pending, error) {
	u, derr := h.s.onBehalf(rootCaller, user)
	if derr != nil {
		return rootsock.Pending{}, sockError(derr)
	}
	a, derr := h.s.beginEnrollment(ctx, u, name, "")
	if derr != nil {
		return rootsock.Pending{}, sockError(derr)
	}
	p := rootsock.Pending{ID: a.ID, URI: a.URI, Expires: a.Expires.Unix()}
	key, err := totp.ParseURI(a.URI)
	if err != nil {
		// The URI is a secret: the error does not show it.
		return rootsock.Pending{}, fmt.Errorf("enrollment of %s: the authority sent an unusable otpauth URI", user)
	}
	var qr bytes.Buffer
	if qrterm.Write(&qr, key.URI(), qrterm.HalfBlocks) == nil {
		p.QR = qrterm.Plain(qr.String())
	}
	return p, nil
}

func (h rootHandler) FinishEnrollmentFor(ctx context.Context, user, id, code string) (rootsock.Finished, error) {
	u, derr := h.s.onBehalf(rootCaller, user)
	if derr != nil {
		return rootsock.Finished{}, sockError(derr)
	}
	r, derr := h.s.finishEnrollment(ctx, u, id, code)
	if derr != nil {
		return rootsock.Finished{}, sockError(derr)
	}
	return rootsock.Finished{Status: r.Status, SkewS: r.SkewS, BackupCodes: r.BackupCodes}, nil
}

// sockError is a D-Bus error as the socket answers it: the same name and sentence.
func sockError(e *dbus.Error) *rootsock.Error {
	msg := ""
	if len(e.Body) > 0 {
		msg, _ = e.Body[0].(string)
	}
	return &rootsock.Error{Name: e.Name, Message: msg}
}
