package authlog

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSendsToSyslogSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	log, closer := New(sock, "pam-totp", false)
	log.Warn("authentication auth_err", "user", "alice", "outcome", "wrong_code")
	log.Debug("hidden")
	closer.Close()
	l.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	// authpriv (10) * 8 + warning (4) = 84
	if !strings.HasPrefix(got, "<84>") || !strings.Contains(got, "pam-totp[") ||
		!strings.Contains(got, "user=alice") || !strings.Contains(got, "outcome=wrong_code") {
		t.Errorf("syslog line = %q", got)
	}
	if strings.Contains(got, "time=") {
		t.Errorf("line carries its own time: %q", got)
	}
	l.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := l.Read(buf); err == nil {
		t.Errorf("debug line sent without debug: %q", buf[:n])
	}
}

func TestNoSyslogIsSilentAndFast(t *testing.T) {
	t.Parallel()
	log, closer := New(filepath.Join(t.TempDir(), "absent"), "pam-totp", true)
	defer closer.Close()
	start := time.Now()
	for i := 0; i < 100; i++ {
		log.Error("x", "i", i)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 lines without syslog took %s", d)
	}
}
