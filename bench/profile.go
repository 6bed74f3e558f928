//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// profileRow is one part of a pam_totp login, measured on its own.
type profileRow struct {
	What     string
	P50, P99 time.Duration
}

// profile breaks a pam_totp login at the largest size into parts: the PAM floor, the module and
// its helper without the store (policy mode "off"), the helper's exec alone, and the store
// operations the helper does, run in this process with the same package and files.
func profile(ctx context.Context, o options, m, sock *pamTotp, confDir string, ds *dataset, rows []row) ([]profileRow, error) {
	var out []profileRow
	add := func(what string, lat []int64) {
		out = append(out, profileRow{What: what, P50: percentile(lat, 0.5), P99: percentile(lat, 0.99)})
	}
	po := o
	po.Logins = o.ProfileN

	for _, r := range rows {
		if isFloor(r) && r.Procs == 1 {
			out = append(out, profileRow{What: "PAM transaction with pam_permit.so only (libpam, dlopen, driver)", P50: r.P50, P99: r.P99})
		}
	}

	// fork+exec from a worker process, the way the module starts its helper.
	for _, e := range []struct {
		what  string
		argv  []string
		spawn bool
	}{
		{"fork+exec+exit of /bin/true from the host process (this machine's floor)", []string{"/bin/true"}, false},
		{"posix_spawn (vfork-style, no page-table copy)+exit of /bin/true from the host process", []string{"/bin/true"}, true},
		{"fork+exec of pam-totp-helper --version from the host: Go runtime start, package init, exit", []string{m.helper, "--version"}, false},
		{"posix_spawn of pam-totp-helper --version from the host", []string{m.helper, "--version"}, true},
	} {
		results, err := runWorkers(ctx, o.Worker, []job{{Exec: e.argv, Logins: o.ProfileN, Spawn: e.spawn}})
		if err != nil {
			return nil, fmt.Errorf("fork+exec %s: %w", e.argv[0], err)
		}
		r := merge(results, 1)
		out = append(out, profileRow{What: e.what, P50: r.P50, P99: r.P99})
	}

	storeDir := m.storeDir(ds)
	offConf := filepath.Join(m.root, "pam_totp-off.conf")
	if err := m.writeConfig(offConf, storeDir, config.ModeOff); err != nil {
		return nil, err
	}
	if err := writeService(confDir, "bench-totp-off",
		fmt.Sprintf("%s helper=%s config=%s socket=none", m.so, m.helper, offConf)); err != nil {
		return nil, err
	}
	r, err := measure(ctx, po, confDir, "bench-totp-off", ds.Pool, 1, true)
	if err != nil {
		return nil, fmt.Errorf("pam_totp mode off: %w", err)
	}
	if r.WrongResults > 0 {
		return nil, fmt.Errorf("pam_totp mode off: %d failed transactions: %v", r.WrongResults, r.Unexpected)
	}
	out = append(out, profileRow{What: "pam_totp.so with mode = \"off\": fork+exec of the helper, Go start, config, protocol; no store",
		P50: r.P50, P99: r.P99})

	conf := filepath.Join(filepath.Dir(storeDir), "pam_totp.conf")
	lat, err := timeN(o.ProfileN, func(int) error { _, _, err := config.Load(conf); return err })
	if err != nil {
		return nil, err
	}
	add("config.Load of the bench config (in process)", lat)

	opts := store.Options{Dir: storeDir, Timeout: 10 * time.Second}
	user := func(i int) string { return ds.Pool[i%len(ds.Pool)].Name }
	lat, err = timeN(o.ProfileN, func(i int) error {
		_, err := store.NewTokens(opts).ReadUser(user(i))
		return err
	})
	if err != nil {
		return nil, err
	}
	add(fmt.Sprintf("tokens.db (%d users): open read-only, read one user, close (in process)", ds.N+len(ds.Pool)), lat)

	st := store.NewState(opts)
	lat, err = timeN(o.ProfileN, func(i int) error {
		return st.View(func(x *store.StateTx) error { _ = x.Failures(user(i)); return nil })
	})
	if err != nil {
		return nil, err
	}
	add("state.db: View (open read-only, read, close; in process)", lat)

	step := uint64(1 << 40)
	lat, err = timeN(o.ProfileN, func(i int) error {
		step++
		return st.Update(func(x *store.StateTx) error {
			if err := x.SetLastStep(user(i), "bench", step); err != nil {
				return err
			}
			return x.ClearFailures(user(i))
		})
	})
	if err != nil {
		return nil, err
	}
	add("state.db: Update (open read-write, write, commit with fdatasync, close; in process)", lat)

	lat, err = syncLatency(filepath.Join(storeDir, "sync-probe"), o.ProfileN)
	if err != nil {
		return nil, err
	}
	add("one 4 KiB write + fdatasync on the same file system", lat)

	for _, r := range rows {
		if r.Module == m.Name() && r.N == ds.N && r.Procs == 1 {
			out = append(out, profileRow{What: "whole pam_totp (exec) login (results table, 1 process)", P50: r.P50, P99: r.P99})
		}
	}
	if sock != nil && sock.daemon != nil {
		sp, err := profileSocket(ctx, po, sock, confDir, ds, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sp...)
	}
	return out, nil
}

// profileSocket takes a pam_totp (socket) login apart: the module and the resident verifier
// without the store, and the store operations the verifier does through its kept handles
// (store.Resident), run in this process on the socket row's files while totp-syncd keeps them
// open too.
func profileSocket(ctx context.Context, po options, m *pamTotp, confDir string, ds *dataset, rows []row) ([]profileRow, error) {
	var out []profileRow
	add := func(what string, lat []int64) {
		out = append(out, profileRow{What: what, P50: percentile(lat, 0.5), P99: percentile(lat, 0.99)})
	}
	storeDir := m.storeDir(ds)
	offConf := filepath.Join(m.root, "pam_totp-socket-off.conf")
	if err := m.writeConfig(offConf, storeDir, config.ModeOff); err != nil {
		return nil, err
	}
	if err := writeService(confDir, "bench-totp-socket-off",
		fmt.Sprintf("%s helper=%s config=%s socket=%s", m.so, m.helper, offConf, m.socket(ds))); err != nil {
		return nil, err
	}
	r, err := measure(ctx, po, confDir, "bench-totp-socket-off", ds.Pool, 1, true)
	if err != nil {
		return nil, fmt.Errorf("pam_totp (socket) mode off: %w", err)
	}
	if r.WrongResults > 0 {
		return nil, fmt.Errorf("pam_totp (socket) mode off: %d failed transactions: %v", r.WrongResults, r.Unexpected)
	}
	out = append(out, profileRow{What: "pam_totp.so via the resident verifier with mode = \"off\": socket checks, connect, request, config (cached), verdict, auth log; no store",
		P50: r.P50, P99: r.P99})

	// The module against a verifier that does nothing: its own share of every socket login.
	null, err := startNullVerifier(filepath.Join(m.root, "null-verifier"))
	if err != nil {
		return nil, err
	}
	defer null.Close()
	if err := writeService(confDir, "bench-totp-socket-null",
		fmt.Sprintf("%s helper=%s config=%s socket=%s", m.so, m.helper, offConf, null.Path)); err != nil {
		return nil, err
	}
	for _, procs := range po.Procs { // as the results table's rows
		r, err := measure(ctx, po, confDir, "bench-totp-socket-null", ds.Pool, procs, true)
		if err != nil {
			return nil, fmt.Errorf("pam_totp with a null verifier: %w", err)
		}
		if r.WrongResults > 0 {
			return nil, fmt.Errorf("pam_totp with a null verifier: %d failed transactions: %v", r.WrongResults, r.Unexpected)
		}
		out = append(out, profileRow{What: fmt.Sprintf("pam_totp.so with a verifier that does nothing (answers success at once), %d process%s, %.0f logins/s: "+
			"the module's own part of any socket login (NSS, checks, connect, frames)", procs, map[bool]string{true: "es"}[procs > 1], r.Throughput),
			P50: r.P50, P99: r.P99})
	}

	opts := store.Options{Dir: storeDir, Timeout: 10 * time.Second}
	res := store.NewResident()
	defer res.Close()
	user := func(i int) string { return ds.Pool[i%len(ds.Pool)].Name }
	kept := res.Tokens(opts)
	if _, err := kept.ReadUser(user(0)); err != nil { // the first read opens
		return nil, err
	}
	lat, err := timeN(po.ProfileN, func(i int) error { _, err := kept.ReadUser(user(i)); return err })
	if err != nil {
		return nil, err
	}
	add(fmt.Sprintf("tokens.db (%d users) kept open (store.Resident): read one user (in process)", ds.N+len(ds.Pool)), lat)
	st := res.State(opts)
	step := uint64(1 << 41)
	write := func(i int) error {
		step++
		return st.Update(func(x *store.StateTx) error {
			if err := x.SetLastStep(user(i), "bench-profile", step); err != nil {
				return err
			}
			return x.ClearFailures(user(i))
		})
	}
	if err := write(0); err != nil { // the first write opens (and creates) state.db
		return nil, err
	}
	lat, err = timeN(po.ProfileN, func(i int) error {
		return st.View(func(x *store.StateTx) error { _ = x.Failures(user(i)); return nil })
	})
	if err != nil {
		return nil, err
	}
	add("state.db kept open: View (flock, checks, read; in process)", lat)
	lat, err = timeN(po.ProfileN, write)
	if err != nil {
		return nil, err
	}
	add("state.db kept open: Update (flock, checks, write, commit: two fdatasyncs; in process)", lat)
	for _, r := range rows {
		if r.Module == m.Name() && r.N == ds.N && r.Procs == 1 {
			out = append(out, profileRow{What: "whole pam_totp (socket) login (results table, 1 process)", P50: r.P50, P99: r.P99})
		}
	}
	return out, nil
}

func timeN(n int, fn func(int) error) ([]int64, error) {
	lat := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := fn(i); err != nil {
			return nil, err
		}
		lat = append(lat, int64(time.Since(t0)))
	}
	return lat, nil
}

func syncLatency(path string, n int) ([]int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 4096)
	return timeN(n, func(i int) error {
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, 0); err != nil {
			return err
		}
		return syscall.Fdatasync(int(f.Fd()))
	})
}
