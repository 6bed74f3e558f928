// Package protocol is the verifier side of the frames pam_totp.so speaks (docs/protocol.md).
//
// It knows nothing of the transport: the exec'd helper reads and writes a socketpair, a resident
// verifier would use a Unix socket connection; both are an io.ReadWriter here.
package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits shared with pam/pam_totp.c.
const (
	MaxPayload = 16384 // bytes in one frame
	MaxFrames  = 64    // frames the verifier may send in one exchange
	MaxAnswer  = 1024  // longest answer accepted; the module cuts longer ones to MaxAnswer+1
	Version    = "1"
)

// Frame types.
const (
	TypeRequest      byte = 'Q' // module: the request, first and once
	TypeAnswer       byte = 'A' // module: reply to a prompt
	TypeNoAnswer     byte = 'N' // module: the conversation failed
	TypePromptSecret byte = 'P' // verifier: prompt, echo off
	TypePromptEcho   byte = 'E' // verifier: prompt, echo on
	TypeInfo         byte = 'I' // verifier: PAM_TEXT_INFO
	TypeError        byte = 'R' // verifier: PAM_ERROR_MSG
	TypeAuthtok      byte = 'T' // verifier: set PAM_AUTHTOK
	TypeDone         byte = 'D' // verifier: verdict, last frame
)

// Verdict is the outcome the module maps to a PAM return code.
type Verdict string

// Verdicts (docs/protocol.md has the PAM code of each).
const (
	Success         Verdict = "success"
	AuthErr         Verdict = "auth_err"
	UserUnknown     Verdict = "user_unknown"
	MaxTries        Verdict = "maxtries"
	AuthinfoUnavail Verdict = "authinfo_unavail"
	SystemErr       Verdict = "system_err"
)

// Sentinel errors.
var (
	ErrTooLarge    = errors.New("frame larger than the protocol allows")
	ErrTooMany     = errors.New("more frames than the protocol allows")
	ErrUnexpected  = errors.New("unexpected frame type")
	ErrNoAnswer    = errors.New("no answer: the conversation failed")
	ErrBadRequest  = errors.New("malformed request")
	ErrDoneAlready = errors.New("exchange already finished")
)

// ReadFrame reads one frame, refusing payloads over MaxPayload before reading them.
func ReadFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("frame %q of %d bytes: %w", hdr[0], n, ErrTooLarge)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// AppendFrame appends one encoded frame to dst.
func AppendFrame(dst []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return dst, fmt.Errorf("frame %q of %d bytes: %w", typ, len(payload), ErrTooLarge)
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...), nil
}

// Request is what the module tells the verifier about one authentication.
type Request struct {
	Version      string
	User         string
	UserKnown    bool
	UID          string
	Groups       []string
	Service      string
	RHost        string
	TTY          string
	RUser        string
	SSHAuthInfo  string
	AuditSession string
	SID          string
	Config       string
	Policy       string
	Debug        bool
	Args         []string
}

// ParseRequest decodes a request payload: key=value entries, each ended by NUL.
// Unknown keys are ignored; a missing user or version is an error.
func ParseRequest(p []byte) (*Request, error) {
	if len(p) == 0 || p[len(p)-1] != 0 {
		return nil, fmt.Errorf("request not NUL-terminated: %w", ErrBadRequest)
	}
	r := &Request{}
	for _, entry := range bytes.Split(p[:len(p)-1], []byte{0}) {
		k, v, ok := strings.Cut(string(entry), "=")
		if !ok {
			return nil, fmt.Errorf("request entry without '=': %w", ErrBadRequest)
		}
		switch k {
		case "version":
			r.Version = v
		case "user":
			r.User = v
		case "user_known":
			r.UserKnown = v == "1"
		case "uid":
			r.UID = v
		case "group":
			r.Groups = append(r.Groups, v)
		case "groups":
			// The comma-joined list that earlier modules sent, in which a group named
			// "proj,hpc-exempt" read as two groups. A module that still sends it is refused.
			return nil, fmt.Errorf("request has a comma-joined groups entry (pam_totp.so older than the helper): %w", ErrBadRequest)
		case "service":
			r.Service = v
		case "rhost":
			r.RHost = v
		case "tty":
			r.TTY = v
		case "ruser":
			r.RUser = v
		case "ssh_auth_info":
			r.SSHAuthInfo = v
		case "audit_session":
			r.AuditSession = v
		case "sid":
			r.SID = v
		case "config":
			r.Config = v
		case "policy":
			r.Policy = v
		case "debug":
			r.Debug = v == "1"
		case "arg":
			r.Args = append(r.Args, v)
		}
	}
	if r.Version != Version {
		return nil, fmt.Errorf("request version %q, want %q: %w", r.Version, Version, ErrBadRequest)
	}
	if r.User == "" {
		return nil, fmt.Errorf("request without user: %w", ErrBadRequest)
	}
	return r, nil
}

// Encode is the module's side of ParseRequest, for tests and the resident-verifier client.
func (r *Request) Encode() []byte {
	var b bytes.Buffer
	put := func(k, v string) { b.WriteString(k); b.WriteByte('='); b.WriteString(v); b.WriteByte(0) }
	put("version", r.Version)
	put("user", r.User)
	known := "0"
	if r.UserKnown {
		known = "1"
	}
	put("user_known", known)
	put("uid", r.UID)
	for _, g := range r.Groups {
		put("group", g)
	}
	put("service", r.Service)
	put("rhost", r.RHost)
	put("tty", r.TTY)
	put("ruser", r.RUser)
	put("ssh_auth_info", r.SSHAuthInfo)
	put("audit_session", r.AuditSession)
	put("sid", r.SID)
	put("config", r.Config)
	put("policy", r.Policy)
	if r.Debug {
		put("debug", "1")
	}
	for _, a := range r.Args {
		put("arg", a)
	}
	return b.Bytes()
}

// Conn is the verifier's end of one exchange.
type Conn struct {
	rw   io.ReadWriter
	sent int
	done bool
}

// NewConn wraps a transport.
func NewConn(rw io.ReadWriter) *Conn { return &Conn{rw: rw} }

// ReadRequest reads the first frame, which must be a request.
func (c *Conn) ReadRequest() (*Request, error) {
	typ, p, err := ReadFrame(c.rw)
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if typ != TypeRequest {
		return nil, fmt.Errorf("first frame %q: %w", typ, ErrUnexpected)
	}
	return ParseRequest(p)
}

func (c *Conn) send(typ byte, payload []byte) error {
	if c.done {
		return ErrDoneAlready
	}
	if c.sent >= MaxFrames-1 { // the verdict is the last of MaxFrames
		return ErrTooMany
	}
	// Messages are trimmed to the frame limit rather than lost.
	if len(payload) > MaxPayload {
		payload = payload[:MaxPayload]
	}
	buf, err := AppendFrame(make([]byte, 0, 5+len(payload)), typ, payload)
	if err != nil {
		return err
	}
	c.sent++
	_, err = c.rw.Write(buf)
	return err
}

// Prompt asks the user and returns the answer. echo false hides the typing.
// ErrNoAnswer means the conversation failed.
func (c *Conn) Prompt(text string, echo bool) (string, error) {
	typ := TypePromptSecret
	if echo {
		typ = TypePromptEcho
	}
	if err := c.send(typ, []byte(text)); err != nil {
		return "", err
	}
	rtyp, p, err := ReadFrame(c.rw)
	if err != nil {
		return "", fmt.Errorf("read answer: %w", err)
	}
	switch rtyp {
	case TypeAnswer:
		return string(p), nil
	case TypeNoAnswer:
		return "", ErrNoAnswer
	}
	return "", fmt.Errorf("answer frame %q: %w", rtyp, ErrUnexpected)
}

// Info shows a message (PAM_TEXT_INFO).
func (c *Conn) Info(text string) error { return c.send(TypeInfo, []byte(text)) }

// Error shows an error message (PAM_ERROR_MSG).
func (c *Conn) Error(text string) error { return c.send(TypeError, []byte(text)) }

// SetAuthtok hands a password to the module for PAM_AUTHTOK.
func (c *Conn) SetAuthtok(pw string) error { return c.send(TypeAuthtok, []byte(pw)) }

// Done sends the verdict; nothing may follow it.
func (c *Conn) Done(v Verdict) error {
	if c.done {
		return ErrDoneAlready
	}
	buf, _ := AppendFrame(nil, TypeDone, []byte(v))
	c.done = true
	_, err := c.rw.Write(buf)
	return err
}
