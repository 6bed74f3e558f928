//go:build linux

package sync

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
)

// TestSlowClientsCutOff: clients that open a connection and send nothing, or dribble their
// headers, are cut off after read_header_timeout; while they hold every connection slot
// (max_conns) a normal client waits, and is served once they are gone.
func TestSlowClientsCutOff(t *testing.T) {
	needRoot(t)
	c := pamtest.NewCA(t, pamtest.PrivateDir(t), "ca")
	r := startRegistry(t, c, regOptions{Sections: "\n[http]\nread_header_timeout = \"1s\"\nidle_timeout = \"1s\"\nmax_conns = 3\n"})
	time.Sleep(1500 * time.Millisecond) // the harness's idle keep-alive connection times out
	addr := strings.TrimPrefix(r.url, "https://")

	silent := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	dribbler, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dribbler.Close() })
	slow := []net.Conn{dribbler, silent(), silent()} // every slot
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		io.WriteString(dribbler, "GET /v1/status HTTP/1.1\r\nHost: x\r\n")
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := io.WriteString(dribbler, "X-Slow: y\r\n"); err != nil {
					return
				}
			}
		}
	}()

	start := time.Now()
	client := tlsClient(t, c)
	client.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := client.Get(r.url + "/v1/status")
	if err != nil {
		t.Fatalf("GET /v1/status while slow clients held the slots: %v", err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/status = %d, want 200", resp.StatusCode)
	}
	if took < 500*time.Millisecond {
		t.Errorf("GET /v1/status answered after %v while 3 slow clients held max_conns = 3: the limit did not hold", took)
	}
	for i, conn := range slow {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("slow client %d still connected after read_header_timeout", i)
				}
				break
			}
			if i == 0 && strings.Contains(string(buf[:n]), "200 OK") {
				t.Errorf("the dribbling client was served")
			}
		}
	}
	if !r.proc.running() {
		t.Fatal("totp-registry exited")
	}
}
