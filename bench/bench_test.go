//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the driver's worker process.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// TestBenchSmoke runs the whole driver with a handful of logins per module, so that it cannot
// rot between benchmark runs. The benchmark itself is `make bench`, not part of `make test`.
func TestBenchSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates NSS users, and pam_totp.so runs only a root-owned helper")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	so, helper := filepath.Join(root, "build/pam_totp.so"), filepath.Join(root, "build/pam-totp-helper")
	syncd := filepath.Join(root, "build/totp-syncd")
	for _, f := range []string{so, helper, syncd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing: run make build first", f)
		}
	}
	o := options{
		Sizes: []int{50}, Procs: []int{1, 2}, Logins: 12, Pool: 4, PoolPrefix: "ptb-smoke",
		WrongFrac: 0.25, Window: 1, SO: so, Helper: helper, Syncd: syncd, ModuleDir: defaultPamDir(),
		MaxRun: 20 * time.Second, Profile: true, ProfileN: 5, Seed: 1, Log: &testLog{t},
		// No syslog stand-in: /dev/log is e2e/login's to create while its tests run.
	}
	for _, m := range []struct{ name, so string }{
		{"totp", ""}, {"totp-socket", ""}, {"ga", "pam_google_authenticator.so"}, {"oath", "pam_oath.so"},
	} {
		if m.so != "" {
			if _, err := os.Stat(filepath.Join(o.ModuleDir, m.so)); err != nil {
				t.Logf("%s not installed (contrib/scripts/deps.sh): not measured", m.so)
				continue
			}
		}
		o.Modules = append(o.Modules, m.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, prof, err := collect(ctx, o)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	var out bytes.Buffer
	report(&out, o, rows, prof)
	t.Logf("driver output:\n%s", out.String())
	// One row per module and process count, after the pam_permit floor's.
	if want := (len(o.Modules) + 1) * len(o.Procs); len(rows) != want {
		t.Errorf("%d result rows, want %d", len(rows), want)
	}
	for _, r := range rows {
		if r.Logins != o.Logins {
			t.Errorf("%s, %d procs: %d logins, want %d", r.Module, r.Procs, r.Logins, o.Logins)
		}
		// pam_oath fails valid logins under concurrency by itself (see docs/benchmarks.md);
		// every other row must be exact.
		if r.Module == "pam_oath" && r.Procs > 1 {
			continue
		}
		if r.Module == "pam_totp (socket)" && (r.DaemonRSS == 0 || r.DaemonHWM < r.DaemonRSS) {
			t.Errorf("%s, %d procs: totp-syncd RSS %d KiB, peak %d KiB", r.Module, r.Procs, r.DaemonRSS, r.DaemonHWM)
		}
		if r.WrongResults != 0 || r.Lost != 0 {
			t.Errorf("%s, %d procs: %d wrong results (%v), %d lost updates, want 0 and 0",
				r.Module, r.Procs, r.WrongResults, r.Unexpected, r.Lost)
		}
	}
	for _, row := range []string{"| pam_totp (exec) | 50 + 4 | 1 |", "| pam_totp (socket) | 50 + 4 | 1 |"} {
		if len(prof) == 0 || !strings.Contains(out.String(), row) {
			t.Errorf("output lacks %q or the profile:\n%s", row, out.String())
		}
	}
}

// testLog sends the driver's progress lines to t.Log.
type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBenchClaimSmoke runs the claims row briefly: a real totp-registry on loopback, a node's
// totp-syncd that follows it, and libpam logins that the resident verifier claims there; every
// result exact and every valid login claimed (one run: a second would wait for fresh steps).
func TestBenchClaimSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates NSS users, and pam_totp.so runs only a root-owned helper")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string { return filepath.Join(root, "build", name) }
	for _, f := range []string{"pam_totp.so", "pam-totp-helper", "totp-syncd", "totp-registry"} {
		if _, err := os.Stat(bin(f)); err != nil {
			t.Skipf("%s missing: run make build first", bin(f))
		}
	}
	o := options{
		Sizes: []int{10}, Procs: []int{1}, Logins: 12, Pool: 4, PoolPrefix: "ptb-csmoke",
		WrongFrac: 0.25, Window: 1, SO: bin("pam_totp.so"), Helper: bin("pam-totp-helper"), Syncd: bin("totp-syncd"),
		Registry: bin("totp-registry"), Modules: []string{"totp-claim"}, ModuleDir: defaultPamDir(),
		MaxRun: 20 * time.Second, Seed: 2, Log: &testLog{t},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, _, err := collect(ctx, o)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	var claim *row
	for i := range rows {
		if rows[i].Module == "pam_totp (socket, claims)" {
			claim = &rows[i]
		}
	}
	if claim == nil || claim.Logins != o.Logins || claim.WrongResults != 0 || claim.Lost != 0 || claim.DaemonRSS == 0 {
		t.Fatalf("claims row %+v, want %d logins, no wrong result, none lost, the daemon's RSS", claim, o.Logins)
	}
}
