package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	r := &Request{Version: "1", User: "alice", UserKnown: true, UID: "1000", Groups: []string{"users", "hpc"},
		Service: "sshd", RHost: "192.0.2.1", TTY: "ssh", SSHAuthInfo: "publickey ssh-ed25519 AAAA\n",
		AuditSession: "7", SID: "123", Config: "/etc/pam-totp/pam_totp.conf", Policy: "strict", Debug: true,
		Args: []string{"debug", "policy=strict"}}
	got, err := ParseRequest(r.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("ParseRequest(Encode(r)) = %+v, want %+v", got, r)
	}
}

// TestGroupsKeepCommas: a group whose name holds a comma stays one group (before, the module
// joined names with "," and "proj,hpc-exempt" read as the exempt group hpc-exempt).
func TestGroupsKeepCommas(t *testing.T) {
	t.Parallel()
	in := "version=1\x00user=a\x00group=users\x00group=proj,hpc-exempt\x00group=x=y\x00"
	r, err := ParseRequest([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"users", "proj,hpc-exempt", "x=y"}; !slices.Equal(r.Groups, want) {
		t.Errorf("ParseRequest(%q).Groups = %q, want %q", in, r.Groups, want)
	}
	if got := string(r.Encode()); !strings.Contains(got, "group=proj,hpc-exempt\x00") {
		t.Errorf("Encode() = %q, want the group as one entry", got)
	}
}

func TestParseRequestRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"empty":           "",
		"no terminator":   "version=1\x00user=a",
		"no equals":       "version=1\x00user\x00",
		"no user":         "version=1\x00",
		"wrong version":   "version=2\x00user=a\x00",
		"missing version": "user=a\x00",
		"comma groups":    "version=1\x00user=a\x00groups=proj,hpc-exempt\x00",
	}
	for name, in := range tests {
		if _, err := ParseRequest([]byte(in)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ParseRequest(%s) = %v, want ErrBadRequest", name, err)
		}
	}
	// Unknown keys are ignored, so both sides can grow.
	if _, err := ParseRequest([]byte("version=1\x00user=a\x00future=x\x00")); err != nil {
		t.Errorf("ParseRequest(unknown key) = %v, want nil", err)
	}
}

func TestReadFrame(t *testing.T) {
	t.Parallel()
	frame := func(typ byte, n int) []byte {
		b, _ := AppendFrame(nil, typ, bytes.Repeat([]byte("x"), n))
		return b
	}
	huge := []byte{'I', 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"ok", frame('A', 10), nil},
		{"max", frame('A', MaxPayload), nil},
		{"over max header", append([]byte{'A'}, 0, 0, 0x40, 1), ErrTooLarge},
		{"4 GiB header", huge, ErrTooLarge},
		{"truncated payload", frame('A', 10)[:8], io.ErrUnexpectedEOF},
		{"truncated header", []byte{'A', 0}, io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
	}
	for _, tt := range tests {
		_, _, err := ReadFrame(bytes.NewReader(tt.in))
		if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
			t.Errorf("ReadFrame(%s) = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := AppendFrame(nil, 'I', make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("AppendFrame(oversize) = %v, want ErrTooLarge", err)
	}
}

// pipe is a scripted module: it holds the module's frames and records the verifier's.
type pipe struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (p *pipe) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *pipe) Write(b []byte) (int, error) { return p.out.Write(b) }

func module(frames ...[]byte) *pipe {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return &pipe{in: bytes.NewReader(b)}
}

func mustFrame(typ byte, p string) []byte {
	b, _ := AppendFrame(nil, typ, []byte(p))
	return b
}

func TestConnExchange(t *testing.T) {
	t.Parallel()
	req := (&Request{Version: "1", User: "bob", UserKnown: true}).Encode()
	p := module(mustFrame(TypeRequest, string(req)), mustFrame(TypeAnswer, "123456"), mustFrame(TypeNoAnswer, ""))
	c := NewConn(p)
	r, err := c.ReadRequest()
	if err != nil || r.User != "bob" {
		t.Fatalf("ReadRequest = %+v, %v", r, err)
	}
	if a, err := c.Prompt("Verification code: ", false); a != "123456" || err != nil {
		t.Errorf("Prompt = %q, %v; want 123456", a, err)
	}
	if _, err := c.Prompt("again: ", true); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("Prompt after N = %v, want ErrNoAnswer", err)
	}
	c.Info("hello")
	c.SetAuthtok("pw")
	if err := c.Done(Success); err != nil {
		t.Fatal(err)
	}
	if err := c.Info("late"); !errors.Is(err, ErrDoneAlready) {
		t.Errorf("Info after Done = %v, want ErrDoneAlready", err)
	}
	var types []string
	for {
		typ, payload, err := ReadFrame(&p.out)
		if err != nil {
			break
		}
		types = append(types, string(typ)+":"+string(payload))
	}
	want := "P:Verification code: |E:again: |I:hello|T:pw|D:success"
	if got := strings.Join(types, "|"); got != want {
		t.Errorf("frames = %q, want %q", got, want)
	}
}

func TestConnFrameCap(t *testing.T) {
	t.Parallel()
	p := module()
	c := NewConn(p)
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		err = c.Info("x")
	}
	if !errors.Is(err, ErrTooMany) {
		t.Fatalf("Info x%d = %v, want ErrTooMany", n, err)
	}
	if err := c.Done(AuthErr); err != nil {
		t.Fatalf("Done after cap = %v; the verdict must still fit", err)
	}
	frames := 0
	for {
		if _, _, err := ReadFrame(&p.out); err != nil {
			break
		}
		frames++
	}
	if frames != MaxFrames {
		t.Errorf("verifier sent %d frames, want at most MaxFrames=%d", frames, MaxFrames)
	}
}

func TestConnRejectsWrongFirstFrame(t *testing.T) {
	t.Parallel()
	c := NewConn(module(mustFrame(TypeAnswer, "123456")))
	if _, err := c.ReadRequest(); !errors.Is(err, ErrUnexpected) {
		t.Errorf("ReadRequest(answer frame) = %v, want ErrUnexpected", err)
	}
	c = NewConn(module(mustFrame(TypeRequest, "version=1\x00user=a\x00"), mustFrame(TypeInfo, "x")))
	c.ReadRequest()
	if _, err := c.Prompt("p", false); !errors.Is(err, ErrUnexpected) {
		t.Errorf("Prompt answered by an info frame = %v, want ErrUnexpected", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(mustFrame(TypeRequest, "version=1\x00user=a\x00"))
	f.Add([]byte{'A', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, payload, err := ReadFrame(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(payload) > MaxPayload {
			t.Fatalf("ReadFrame returned %d bytes, over MaxPayload", len(payload))
		}
		again, err := AppendFrame(nil, typ, payload)
		if err != nil || !bytes.Equal(again, in[:len(again)]) {
			t.Fatalf("AppendFrame(ReadFrame(x)) != x")
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add((&Request{Version: "1", User: "alice", Groups: []string{"a", "b"}, Args: []string{"debug"}}).Encode())
	f.Add([]byte("version=1\x00user=\x00"))
	f.Add([]byte("user=a\x00version=1\x00groups=,,\x00"))
	f.Add([]byte("user=a\x00version=1\x00group=proj,hpc-exempt\x00group=\x00group=a=b\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseRequest(in)
		if err != nil {
			return
		}
		if r.User == "" || r.Version != Version {
			t.Fatalf("ParseRequest accepted %+v", r)
		}
		// What parses must survive a round trip unchanged, each group as one name.
		again, err := ParseRequest(r.Encode())
		if err != nil || again.User != r.User || again.Service != r.Service || len(again.Args) != len(r.Args) ||
			!slices.Equal(again.Groups, r.Groups) {
			t.Fatalf("round trip of %+v = %+v, %v", r, again, err)
		}
	})
}
