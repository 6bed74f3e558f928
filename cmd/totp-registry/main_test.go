package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/seal"
)

// writeTLS writes a throwaway CA and a server certificate for 127.0.0.1; it returns the CA pool.
func writeTLS(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leafT, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	write(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinaryServes builds totp-registry, starts it with a TLS config, checks /v1/status and an
// admin call, and stops it with SIGTERM.
func TestBinaryServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "totp-registry")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	etc := filepath.Join(dir, "etc")
	os.Mkdir(etc, 0o755)
	pool := writeTLS(t, etc)
	line, _ := seal.GenerateKey(rand.Reader, "k1")
	write(t, filepath.Join(etc, "keyring"), []byte(line))
	sum := sha256.Sum256([]byte("admin-secret"))
	write(t, filepath.Join(etc, "admins"), []byte("root "+hex.EncodeToString(sum[:])+"\n"))
	addr := freePort(t)
	conf := fmt.Sprintf("listen = %q\ntls_cert = %q\ntls_key = %q\nstore = %q\nkey_file = %q\nadmin_tokens_file = %q\n",
		addr, filepath.Join(etc, "tls.crt"), filepath.Join(etc, "tls.key"), filepath.Join(dir, "store", "registry.db"),
		filepath.Join(etc, "keyring"), filepath.Join(etc, "admins"))
	cfgPath := filepath.Join(etc, "registry.conf")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	// withAdmins is a config like cfgPath's whose admin tokens file holds lines.
	withAdmins := func(name, lines string) string {
		admins := filepath.Join(etc, name)
		write(t, admins, []byte(lines))
		p := filepath.Join(etc, name+".conf")
		if err := os.WriteFile(p, []byte(strings.Replace(conf, filepath.Join(etc, "admins"), admins, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// withExtra is a config like cfgPath's with text at its end.
	withExtra := func(name, text string) string {
		p := filepath.Join(etc, name+".conf")
		if err := os.WriteFile(p, []byte(conf+text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := hex.EncodeToString(sum[:])
	for _, tt := range []struct {
		name    string
		args    []string
		want    string
		wantErr bool
	}{
		{"version", []string{"--version"}, "totp-registry", false},
		{"check-config", []string{"--config", cfgPath, "--check-config"}, "OK", false},
		{"check-config unknown key", []string{"--config", withExtra("typo", "[http]\nmax_con = 5\n"), "--check-config"},
			`unknown key "http.max_con" at ` + filepath.Join(etc, "typo.conf") + `:8:1; did you mean "max_conns"?`, true},
		{"check-config misspelt admin field", []string{"--config", withAdmins("admins-bad", "desk "+h+" scope=c1\n"), "--check-config"},
			`line 1 (desk): unknown field "scope"`, true},
		{"check-config expired admin", []string{"--config", withAdmins("admins-old", "old "+h+" role=helpdesk expires=2020-01-31\n"), "--check-config"},
			`msg="admin token expired"`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			if (err != nil) != tt.wantErr || !strings.Contains(string(out), tt.want) {
				t.Errorf("totp-registry %v = %v %q, want %q (error %v)", tt.args, err, out, tt.want, tt.wantErr)
			}
		})
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("totp-registry did not stop within 10 s of SIGTERM")
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var status map[string]any
	for {
		resp, err := client.Get("https://" + addr + "/v1/status")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&status)
			resp.Body.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no /v1/status within 10 s: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, ok := status["revision"]; !ok {
		t.Errorf("status = %v, want a revision", status)
	}
	req, _ := http.NewRequest("POST", "https://"+addr+"/v1/admin/users", strings.NewReader(`{"name":"ann","scopes":["a"]}`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("POST user = %d, want 201", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("totp-registry exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if strings.Contains(stderr.String(), "admin-secret") {
		t.Error("the log holds the admin token")
	}
	// rotate-key with the service stopped.
	out, err := exec.Command(bin, "--config", cfgPath, "rotate-key").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-sealed") {
		t.Errorf("rotate-key = %v %s", err, out)
	}
	done <- nil
}
