//go:build linux

// Command pambench measures logins through real libpam transactions against pam_totp.so,
// pam_google_authenticator.so and pam_oath.so, in one process and in several worker processes,
// at several sizes of the token database. It prints Markdown (docs/benchmarks.md is made from
// it by contrib/scripts/bench.sh).
//
// It must run as root: it creates a pool of throwaway users (prefix ptb-, removed at the end),
// and pam_totp.so only runs a root-owned helper with a root-owned config. Everything else lives
// in a private temp directory, and every service is read from a private confdir
// (pam_start_confdir), so the host's /etc/pam.d is not touched.
//
// Each run is measured in fresh worker processes (this binary, started again with
// PAMBENCH_WORKER=1), so that the peak RSS of a worker is the host RSS of that module alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the knobs of one benchmark run.
type options struct {
	Sizes      []int // synthetic users in each database
	Procs      []int // worker processes per run
	Logins     int   // logins per run
	Pool       int   // NSS users who log in
	PoolPrefix string
	WrongFrac  float64
	Window     int
	Modules    []string // totp, totp-socket, ga, oath
	SO, Helper string   // pam_totp.so and pam-totp-helper to test
	Syncd      string   // totp-syncd, for the totp-socket and totp-claim rows
	Registry   string   // totp-registry, for the totp-claim row
	OathMax    int      // largest size pam_oath is measured at (it rewrites its whole file per login); 0: all
	ModuleDir  string   // where libpam finds pam_google_authenticator.so and pam_oath.so
	MaxRun     time.Duration
	Profile    bool
	ProfileN   int // iterations of each profile step
	Seed       uint64
	Worker     string // executable for workers; this one when empty
	Syslog     string // where to stand in for a syslog daemon if none listens; "" for nowhere
	Log        io.Writer
}

func main() {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain())
	}
	if len(os.Args) > 1 && os.Args[1] == "sync" { // pambench sync [flags]: syncbench.go
		os.Exit(syncMain(os.Args[2:]))
	}
	o := options{Log: os.Stderr, Syslog: syslogPath}
	var sizes, procs, modules string
	flag.StringVar(&sizes, "sizes", "100,10000,100000,1000000", "synthetic users in the databases, comma-separated")
	flag.StringVar(&procs, "procs", "1,8", "worker processes per run, comma-separated")
	flag.IntVar(&o.Logins, "logins", 2000, "logins per module, size and process count")
	flag.IntVar(&o.Pool, "pool", 1000, "users in NSS who log in (created with useradd, removed at the end)")
	flag.StringVar(&o.PoolPrefix, "pool-prefix", "ptb-", "name prefix of the pool users")
	flag.Float64Var(&o.WrongFrac, "wrong", 0.1, "fraction of logins with a deliberately wrong code")
	flag.IntVar(&o.Window, "window", 1, "time steps either side of now every module accepts")
	flag.StringVar(&modules, "modules", "totp,totp-socket,totp-claim,ga,oath", "modules to measure: totp (exec'ing the helper), totp-socket (totp-syncd's resident verifier), totp-claim (the same with the cluster-wide claim at a totp-registry on loopback; first size only), ga, oath")
	flag.StringVar(&o.SO, "module", "build/pam_totp.so", "pam_totp.so to measure")
	flag.StringVar(&o.Helper, "helper", "build/pam-totp-helper", "pam-totp-helper to measure")
	flag.StringVar(&o.Syncd, "syncd", "build/totp-syncd", "totp-syncd whose resident verifier the totp-socket row measures")
	flag.StringVar(&o.Registry, "registry", "build/totp-registry", "totp-registry the totp-claim row's node claims at")
	flag.StringVar(&o.ModuleDir, "pamdir", defaultPamDir(), "directory of the system's PAM modules")
	flag.IntVar(&o.OathMax, "oath-max", 100000, "largest size pam_oath is measured at (each of its logins reads and rewrites the whole file)")
	flag.DurationVar(&o.MaxRun, "max-run", 2*time.Minute, "stop a run after this long")
	flag.BoolVar(&o.Profile, "profile", true, "also break a pam_totp login down into its parts")
	flag.IntVar(&o.ProfileN, "profile-n", 300, "iterations of each profile step")
	flag.Uint64Var(&o.Seed, "seed", uint64(time.Now().UnixNano()), "seed of secrets and wrong codes")
	flag.Parse()
	var err error
	if o.Sizes, err = ints(sizes); err == nil {
		o.Procs, err = ints(procs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pambench:", err)
		os.Exit(2)
	}
	o.Modules = strings.Split(modules, ",")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pambench:", err)
		stop()
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: want non-negative integers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func defaultPamDir() string {
	for _, d := range []string{"/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
		"/usr/lib64/security", "/lib/security"} {
		if _, err := os.Stat(filepath.Join(d, "pam_permit.so")); err == nil {
			return d
		}
	}
	return "/lib/security"
}

// run measures and prints the Markdown to out.
func run(ctx context.Context, o options, out io.Writer) error {
	rows, prof, err := collect(ctx, o)
	if err != nil {
		return err
	}
	report(out, o, rows, prof)
	return nil
}

// collect sets everything up, measures every module, size and process count, and cleans up.
func collect(ctx context.Context, o options) (rows []row, prof []profileRow, err error) {
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("must run as root (useradd, root-owned helper and config)")
	}
	if o.Logins < 1 || o.Pool < 1 || len(o.Sizes) == 0 || len(o.Procs) == 0 {
		return nil, nil, errors.New("need at least one login, pool user, size and process count")
	}
	for _, p := range o.Procs {
		if p < 1 || p > o.Pool {
			return nil, nil, fmt.Errorf("procs %d: must be between 1 and the pool size %d", p, o.Pool)
		}
	}
	if o.Worker == "" {
		if o.Worker, err = os.Executable(); err != nil {
			return nil, nil, err
		}
	}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, "pambench: "+format+"\n", a...) }

	var sink *syslogSink
	if o.Syslog != "" {
		if sink, err = startSyslogSink(o.Syslog); err != nil {
			return nil, nil, fmt.Errorf("syslog stand-in on %s: %w", o.Syslog, err)
		}
	}
	defer sink.Close()
	if sink != nil {
		logf("nothing listens on %s: listening there (and dropping) for the run", syslogPath)
	}

	root, err := os.MkdirTemp("", "pam-totp-bench-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(root)
	confDir := filepath.Join(root, "pam.d")
	bin := filepath.Join(root, "bin")
	for _, d := range []string{confDir, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, nil, err
		}
	}

	pool, cleanup, err := makePool(ctx, o.PoolPrefix, o.Pool, logf)
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err != nil {
		return nil, nil, err
	}

	var mods []module
	var totpMod, sockMod *pamTotp
	for _, name := range o.Modules {
		switch name {
		case "totp", "totp-socket":
			// Copies in the root 0700 temp dir: the module insists on a root-owned helper
			// in root-owned directories, wherever the checkout is.
			so, helper := filepath.Join(bin, "pam_totp.so"), filepath.Join(bin, "pam-totp-helper")
			if err := copyFile(o.SO, so, 0o644); err != nil {
				return nil, nil, fmt.Errorf("pam_totp.so (run make build): %w", err)
			}
			if err := copyFile(o.Helper, helper, 0o755); err != nil {
				return nil, nil, fmt.Errorf("pam-totp-helper (run make build): %w", err)
			}
			m := &pamTotp{root: root, confDir: confDir, so: so, helper: helper, window: o.Window}
			if name == "totp-socket" {
				m.syncd = filepath.Join(bin, "totp-syncd")
				if err := copyFile(o.Syncd, m.syncd, 0o755); err != nil {
					return nil, nil, fmt.Errorf("totp-syncd (run make build): %w", err)
				}
				defer m.Close()
				sockMod = m
			} else {
				totpMod = m
			}
			mods = append(mods, m)
		case "totp-claim":
			so, helper, syncd := filepath.Join(bin, "pam_totp.so"), filepath.Join(bin, "pam-totp-helper"), filepath.Join(bin, "totp-syncd")
			for _, c := range [][2]string{{o.SO, so}, {o.Helper, helper}, {o.Syncd, syncd}} {
				if err := copyFile(c[0], c[1], 0o755); err != nil {
					return nil, nil, fmt.Errorf("%s (run make build): %w", filepath.Base(c[0]), err)
				}
			}
			m := &claimTotp{root: root, confDir: confDir, so: so, helper: helper, syncd: syncd, registry: o.Registry, window: o.Window}
			defer m.Close()
			mods = append(mods, m)
		case "ga":
			if err := need(o.ModuleDir, "pam_google_authenticator.so", "libpam-google-authenticator"); err != nil {
				return nil, nil, err
			}
			mods = append(mods, &googleAuth{dir: filepath.Join(root, "ga"), confDir: confDir,
				window: o.Window, rateLimit: fmt.Sprintf("%d %d", gaRateAttempts, gaRateInterval)})
		case "oath":
			if err := need(o.ModuleDir, "pam_oath.so", "libpam-oath"); err != nil {
				return nil, nil, err
			}
			mods = append(mods, &oath{file: filepath.Join(root, "users.oath"), confDir: confDir, window: o.Window})
		default:
			return nil, nil, fmt.Errorf("unknown module %q (want totp, totp-socket, totp-claim, ga, oath)", name)
		}
	}
	if err := writeBase(confDir); err != nil {
		return nil, nil, err
	}

	rng := newSecrets(o.Seed)
	poolAccounts := make([]account, len(pool))
	for i, u := range pool {
		poolAccounts[i] = account{Name: u, Secret: rng.secret()}
	}
	// The floor: the same driver and logins with pam_permit.so alone, so that what a module
	// adds to the host's time and RSS can be read off against it.
	for _, p := range o.Procs {
		r, err := measure(ctx, o, confDir, "bench-permit", poolAccounts, p, true)
		if err != nil {
			return nil, nil, fmt.Errorf("pam_permit, %d procs: %w", p, err)
		}
		r.Module, r.N, r.Pool = "pam_permit (floor)", 0, len(pool)
		logf("%s", r.summary())
		rows = append(rows, r)
	}

	var last *dataset
	for _, n := range o.Sizes {
		ds := &dataset{N: n, Pool: poolAccounts, Synthetic: make([]account, n)}
		for i := range ds.Synthetic {
			ds.Synthetic[i] = account{Name: fmt.Sprintf("syn%07d", i), Secret: rng.secret()}
		}
		mods := mods
		if o.OathMax > 0 && n > o.OathMax {
			mods = slices.DeleteFunc(slices.Clone(mods), func(m module) bool { _, ok := m.(*oath); return ok })
			logf("pam_oath: not measured at %d users (-oath-max %d)", n, o.OathMax)
		}
		if n != o.Sizes[0] {
			mods = slices.DeleteFunc(slices.Clone(mods), func(m module) bool { _, ok := m.(*claimTotp); return ok })
		}
		for _, m := range mods {
			t0 := time.Now()
			if err := m.Prepare(ds); err != nil {
				return nil, nil, fmt.Errorf("%s, %d users: prepare: %w", m.Name(), n, err)
			}
			logf("%s: data for %d+%d users written in %s", m.Name(), n, len(pool), time.Since(t0).Round(time.Millisecond))
		}
		for _, m := range mods {
			for _, p := range o.Procs {
				if err := ctx.Err(); err != nil {
					return nil, nil, err
				}
				if err := m.Reset(ds); err != nil {
					return nil, nil, fmt.Errorf("%s: reset: %w", m.Name(), err)
				}
				// Written data goes to disk now, not in the middle of the next row's fsyncs.
				syscall.Sync()
				sink.takeErrors()
				logged := sink.count()
				var cpu0 time.Duration
				daemon := daemonOf(m)
				if daemon != nil {
					cpu0 = procCPU(daemon.Pid)
				}
				r, err := measure(ctx, o, confDir, m.Service(), ds.Pool, p, false)
				if err != nil {
					return nil, nil, fmt.Errorf("%s, %d users, %d procs: %w", m.Name(), n, p, err)
				}
				if sink != nil && r.Logins > 0 {
					r.SyslogPerLogin = float64(sink.count()-logged) / float64(r.Logins)
				}
				r.Module, r.N, r.Pool = m.Name(), n, len(pool)
				if _, ok := m.(*claimTotp); ok {
					r.N = 0 // the node holds the registry's set: the pool alone
				}
				if r.Lost, err = m.Lost(ds, r.last); err != nil {
					return nil, nil, fmt.Errorf("%s: check state: %w", m.Name(), err)
				}
				if daemon != nil {
					r.DaemonRSS, r.DaemonHWM = procRSS(daemon.Pid)
					if r.Logins > 0 {
						r.DaemonCPU = (procCPU(daemon.Pid) - cpu0) / time.Duration(r.Logins)
					}
				}
				logf("%s", r.summary())
				// Let the last datagrams arrive before taking this row's error lines.
				time.Sleep(50 * time.Millisecond)
				for _, e := range sink.takeErrors() {
					logf("  syslog: %s", e)
				}
				rows = append(rows, r)
			}
		}
		last = ds
	}

	if o.Profile && totpMod != nil {
		logf("profile: pam_totp at %d users", last.N)
		if prof, err = profile(ctx, o, totpMod, sockMod, confDir, last, rows); err != nil {
			return nil, nil, fmt.Errorf("profile: %w", err)
		}
	}
	return rows, prof, nil
}

// syslogPath is where glibc's syslog() and pam_totp's helper send log lines.
const syslogPath = "/dev/log"

// GA's RATE_LIMIT line, and what the driver stays under per user.
const (
	gaRateAttempts = 10
	gaRateInterval = 30
	maxPerUser     = 8
)

func need(dir, name, pkg string) error {
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("%s not found in %s (apt-get install %s, or contrib/scripts/deps.sh)", name, dir, pkg)
	}
	return nil
}

// measure runs one login job split over procs workers and merges their results.
func measure(ctx context.Context, o options, confDir, service string, pool []account, procs int, anyCode bool) (row, error) {
	jobs := make([]job, procs)
	for k := range jobs {
		var users []account
		for i := k; i < len(pool); i += procs {
			users = append(users, pool[i])
		}
		n := o.Logins / procs
		if k < o.Logins%procs {
			n++
		}
		jobs[k] = job{
			ConfDir: confDir, Service: service, Users: users, Logins: n, WrongFrac: o.WrongFrac,
			Window: o.Window, Period: 30, AnyCode: anyCode, MaxPerUser: maxPerUser,
			RateWindow: gaRateInterval, MaxDuration: o.MaxRun, Seed: o.Seed + uint64(k)*7919,
		}
		if anyCode {
			jobs[k].WrongFrac = 0
		}
	}
	results, err := runWorkers(ctx, o.Worker, jobs)
	if err != nil {
		return row{}, err
	}
	return merge(results, procs), nil
}

// procRSS reads VmRSS and VmHWM (KiB) of a process; zeros when it cannot.
func procRSS(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// procCPU is the user+system CPU time a process has used (/proc/PID/stat), 0 when unknown.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100

// daemonOf is the totp-syncd of a socket row (nil for the others).
func daemonOf(m module) *os.Process {
	switch d := m.(type) {
	case *pamTotp:
		if d.daemon != nil {
			return d.daemon.Process
		}
	case *claimTotp:
		return d.process()
	}
	return nil
}
