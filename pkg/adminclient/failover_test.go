package adminclient

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestReplicas: with several URLs a call moves on to the next replica only when the one it tried
// cannot have acted on it, and later calls start at the replica that answered.
func TestReplicas(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	start := func(status int, hits *atomic.Int32) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			if status == http.StatusOK {
				io.WriteString(w, `{"name":"alice"}`)
			} else {
				io.WriteString(w, `{"error":"scripted"}`)
			}
		}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	// A closed port: the connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name      string
		aStatus   int // 0: A refuses connections
		call      func(*Client) error
		wantErr   bool
		wantAHits int32
		wantBHits int32
	}{
		{name: "read, A down", call: func(c *Client) error { _, err := c.User(context.Background(), "alice"); return err }, wantBHits: 1},
		{name: "change, A down", call: func(c *Client) error {
			_, err := c.AddUser(context.Background(), NewUser{Name: "alice"})
			return err
		}, wantBHits: 1},
		{name: "read, A 503", aStatus: http.StatusServiceUnavailable, call: func(c *Client) error {
			_, err := c.User(context.Background(), "alice")
			return err
		}, wantAHits: 1, wantBHits: 1},
		{name: "change, A 503: not repeated", aStatus: http.StatusServiceUnavailable, call: func(c *Client) error {
			_, err := c.AddUser(context.Background(), NewUser{Name: "alice"})
			return err
		}, wantErr: true, wantAHits: 1},
		{name: "read, A 500: not moved", aStatus: http.StatusInternalServerError, call: func(c *Client) error {
			_, err := c.User(context.Background(), "alice")
			return err
		}, wantErr: true, wantAHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var aHits, bHits atomic.Int32
			a := dead
			if tt.aStatus != 0 {
				a = start(tt.aStatus, &aHits)
			}
			b := start(http.StatusOK, &bHits)
			c, err := New(Options{URL: a + "," + b, Token: adminToken, CAFile: ca.file(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.call(c); (err != nil) != tt.wantErr {
				t.Errorf("call = %v, want error %v", err, tt.wantErr)
			}
			if aHits.Load() != tt.wantAHits || bHits.Load() != tt.wantBHits {
				t.Errorf("requests at A %d, B %d; want %d, %d", aHits.Load(), bHits.Load(), tt.wantAHits, tt.wantBHits)
			}
			if tt.wantBHits > 0 && c.URL() != b {
				t.Errorf("URL() = %s after B answered, want %s", c.URL(), b)
			}
		})
	}
}
