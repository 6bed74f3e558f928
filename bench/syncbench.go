//go:build linux

package main

// pambench sync: how fast a change at totp-registry reaches login nodes, and what a full sync
// costs. The registry and one totp-syncd are the real processes (build/); the many simulated
// nodes are goroutines, each running the real pkg/nodesync Syncer with its own real bbolt
// tokens.db (the first three on the temp dir's file system, the rest on /dev/shm when it exists,
// so that a hundred nodes' fsyncs on one machine do not measure the one disk). Each part runs once
// per store backend: bbolt (the registry's own file) and etcd (a real 3-member cluster on
// 127.0.0.1 from pkg/kv/etcdtest, build/tools/etcd; each registry on a prefix of its own).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// syncOptions are the knobs of the sync benchmark.
type syncOptions struct {
	Nodes    []int // simulated nodes per latency run
	Writes   int   // admin writes per latency run
	Tokens   int   // tokens of the full sync
	Registry string
	Syncd    string
	Idle     time.Duration // wait before reading a steady-state RSS
	Log      io.Writer
	// Backends are the registry stores to measure ("bbolt", "etcd"); none is bbolt alone.
	Backends []string
	// Etcd is the etcd server binary ("" is etcdtest's: $PAM_TOTP_ETCD or build/tools/etcd).
	Etcd string
	// Adders is how many token adds run at once per replica in the write rate run.
	Adders int
	// Failovers is how many times the fail-over run kills the replica its node follows (etcd).
	Failovers int

	cluster *etcdtest.Cluster // the etcd cluster of the etcd backend, while runSync runs
}

// syncResult is what the sync benchmark measured.
type syncResult struct {
	Latency  []latencyRow
	Rate     []rateRow
	Full     []fullSync
	Failover *failoverRow // etcd only
}

type latencyRow struct {
	Backend            string
	Nodes, Writes      int
	AllP50, AllP99     time.Duration // write to applied on every node
	NodeP50, NodeP99   time.Duration // write to applied, each node on its own
	Max                time.Duration
	WriteP50, WriteP99 time.Duration // the admin request alone
}

// rateRow is the token adds per second that Replicas registry replicas took together, Adders
// at a time each.
type rateRow struct {
	Backend                  string
	Replicas, Adders, Writes int
	Took                     time.Duration
	P50, P99                 time.Duration // one add
}

type fullSync struct {
	Backend               string
	Tokens                int
	Import                time.Duration // CSV import at the registry
	Sync                  time.Duration // totp-syncd start to tokens.db switched
	SyncdHWM, RegistryHWM int64         // kB
	SyncdIdleEmpty        int64         // kB VmRSS, idle with no tokens
	SyncdIdleFull         int64         // kB VmRSS, idle with the full set
	RegistryRSS           int64         // kB VmRSS after the sync
	// The registry's peak anonymous memory (heap, stacks) and peak resident pages of its
	// memory-mapped database file, sampled every 20 ms over import and sync: VmHWM counts both,
	// and the file pages are page cache the kernel can reclaim.
	RegistryAnonPeak, RegistryFilePeak int64 // kB
}

// sampleRSS records the peak RssAnon and RssFile of pid until stop is closed.
func sampleRSS(pid int, stop <-chan struct{}) (done <-chan [2]int64) {
	out := make(chan [2]int64, 1)
	go func() {
		var peak [2]int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak[0] = max(peak[0], pidStatus(pid, "RssAnon"))
			peak[1] = max(peak[1], pidStatus(pid, "RssFile"))
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func syncMain(args []string) int {
	fs := flag.NewFlagSet("pambench sync", flag.ContinueOnError)
	o := syncOptions{Log: os.Stderr}
	var nodes string
	fs.StringVar(&nodes, "nodes", "1,10,100", "simulated nodes per latency run, comma-separated")
	fs.IntVar(&o.Writes, "writes", 200, "admin writes per latency run")
	fs.IntVar(&o.Tokens, "tokens", 100000, "tokens of the full sync (CSV import, one user each)")
	fs.StringVar(&o.Registry, "registry", "build/totp-registry", "totp-registry binary")
	fs.StringVar(&o.Syncd, "syncd", "build/totp-syncd", "totp-syncd binary")
	fs.DurationVar(&o.Idle, "idle", 10*time.Second, "idle time before a steady-state RSS is read")
	backends := fs.String("backends", "bbolt,etcd", "registry stores to measure, comma-separated: bbolt, etcd")
	fs.StringVar(&o.Etcd, "etcd", "build/tools/etcd", "etcd server binary (make etcd) for the etcd backend")
	fs.IntVar(&o.Adders, "adders", 8, "token adds at once per replica in the write rate run")
	fs.IntVar(&o.Failovers, "failovers", 20, "kills of the followed replica in the fail-over run (etcd; 0 skips it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.Nodes, err = ints(nodes); err != nil {
		fmt.Fprintln(os.Stderr, "pambench sync:", err)
		return 2
	}
	for _, b := range strings.Split(*backends, ",") {
		if b != "bbolt" && b != "etcd" {
			fmt.Fprintf(os.Stderr, "pambench sync: -backends: %q is not bbolt or etcd\n", b)
			return 2
		}
		o.Backends = append(o.Backends, b)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := runSync(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pambench sync:", err)
		return 1
	}
	reportSync(os.Stdout, o, res)
	return 0
}

// runSync measures everything; each part has its own registry in its own temp directory.
func runSync(ctx context.Context, o syncOptions) (syncResult, error) {
	var res syncResult
	if os.Geteuid() != 0 {
		return res, errors.New("must run as root (root-owned key, credential and store files)")
	}
	for _, f := range []*string{&o.Registry, &o.Syncd} {
		p, err := filepath.Abs(*f)
		if err == nil {
			_, err = os.Stat(p)
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w (run make build)", *f, err)
		}
		*f = p
	}
	if len(o.Backends) == 0 {
		o.Backends = []string{"bbolt"}
	}
	if o.Adders <= 0 {
		o.Adders = 8
	}
	if slices.Contains(o.Backends, "etcd") {
		if o.Etcd != "" {
			p, err := filepath.Abs(o.Etcd)
			if err != nil {
				return res, err
			}
			os.Setenv(etcdtest.EnvBinary, p)
		}
		dir, err := os.MkdirTemp("", "pambench-etcd-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		if o.cluster, err = etcdtest.Start(etcdtest.Options{Dir: dir}); err != nil {
			return res, fmt.Errorf("etcd for the etcd backend: %w", err)
		}
		defer o.cluster.Close()
	}
	for _, b := range o.Backends {
		for _, n := range o.Nodes {
			fmt.Fprintf(o.Log, "sync bench: %s, %d nodes, %d writes\n", b, n, o.Writes)
			row, err := latencyRun(ctx, o, b, n)
			if err != nil {
				return res, fmt.Errorf("%s, %d nodes: %w", b, n, err)
			}
			res.Latency = append(res.Latency, row)
		}
	}
	for _, b := range o.Backends {
		replicas := []int{1}
		if b == "etcd" {
			replicas = append(replicas, 2) // bbolt is one process's file: no second replica
		}
		for _, n := range replicas {
			fmt.Fprintf(o.Log, "sync bench: %s, token adds through %d replicas\n", b, n)
			row, err := rateRun(ctx, o, b, n)
			if err != nil {
				return res, fmt.Errorf("%s, adds through %d replicas: %w", b, n, err)
			}
			res.Rate = append(res.Rate, row)
		}
	}
	if slices.Contains(o.Backends, "etcd") && o.Failovers > 0 {
		fmt.Fprintf(o.Log, "sync bench: etcd, fail-over of a node, %d kills of its replica\n", o.Failovers)
		row, err := failoverRun(ctx, o, o.Failovers)
		if err != nil {
			return res, fmt.Errorf("fail-over: %w", err)
		}
		res.Failover = &row
	}
	for _, b := range o.Backends {
		fmt.Fprintf(o.Log, "sync bench: %s, full sync of %d tokens\n", b, o.Tokens)
		full, err := fullSyncRun(ctx, o, b)
		if err != nil {
			return res, fmt.Errorf("%s, full sync: %w", b, err)
		}
		res.Full = append(res.Full, full)
	}
	return res, nil
}

// benchRegistry is a totp-registry process with TLS from a throwaway CA.
type benchRegistry struct {
	dir, url, caFile string
	cmd              *exec.Cmd
	done             chan struct{}
	admin            *adminclient.Client

	o             syncOptions
	backend       string
	prefix, token string // the etcd prefix; the admin token
	ca            *testCA
	keyring       string // the keyring line
}

// startBenchRegistry starts a registry on backend: bbolt in dir/data, or etcd on o.cluster under
// a fresh prefix.
func startBenchRegistry(ctx context.Context, o syncOptions, backend, dir string) (*benchRegistry, error) {
	r := &benchRegistry{o: o, backend: backend, prefix: "/pambench-" + hex.EncodeToString(randBytes(6)) + "/",
		token: hex.EncodeToString(randBytes(24))}
	var err error
	if r.ca, err = newTestCA(); err != nil {
		return nil, err
	}
	if r.keyring, err = seal.GenerateKey(rand.Reader, "bench"); err != nil {
		return nil, err
	}
	return r, r.launch(ctx, dir)
}

// replica starts another registry on r's etcd prefix, keyring, admin token and CA.
func (r *benchRegistry) replica(ctx context.Context, dir string) (*benchRegistry, error) {
	c := *r
	c.cmd, c.done = nil, nil
	return &c, c.launch(ctx, dir)
}

// launch writes r's files into dir and starts totp-registry there.
func (r *benchRegistry) launch(ctx context.Context, dir string) error {
	r.dir = dir
	r.caFile = filepath.Join(dir, "ca.pem")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := r.ca.write(r.caFile, certFile, keyFile); err != nil {
		return err
	}
	for _, d := range []string{"data", "keys"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	sum := sha256.Sum256([]byte(r.token))
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	r.url = fmt.Sprintf("https://127.0.0.1:%d", port)
	storeConf := fmt.Sprintf("store = %q\n", filepath.Join(dir, "data", "registry.db"))
	if r.backend == "etcd" {
		eps := `"` + strings.Join(r.o.cluster.Endpoints(), `", "`) + `"`
		storeConf = fmt.Sprintf("\n[store]\nbackend = \"etcd\"\nendpoints = [%s]\nprefix = %q\n", eps, r.prefix)
	}
	conf := filepath.Join(dir, "registry.conf")
	files := []struct {
		path, text string
		mode       os.FileMode
	}{
		{filepath.Join(dir, "keys", "registry.keyring"), r.keyring, 0o600},
		{filepath.Join(dir, "admins"), "bench " + hex.EncodeToString(sum[:]) + "\n", 0o600},
		{conf, fmt.Sprintf("listen = \"127.0.0.1:%d\"\ntls_cert = %q\ntls_key = %q\nkey_file = %q\n"+
			"admin_tokens_file = %q\nissuer = \"pam-totp bench\"\n%s", port, certFile, keyFile,
			filepath.Join(dir, "keys", "registry.keyring"), filepath.Join(dir, "admins"), storeConf), 0o644},
	}
	for _, f := range files {
		if err := writeExact(f.path, f.text, f.mode); err != nil {
			return err
		}
	}
	if r.admin, err = adminclient.New(adminclient.Options{URL: r.url, Token: r.token, CAFile: r.caFile,
		Timeout: 10 * time.Minute}); err != nil {
		return err
	}
	return r.start(ctx)
}

// start runs totp-registry on the config in r.dir (written by launch; again after a kill) and
// waits until it answers.
func (r *benchRegistry) start(ctx context.Context) error {
	log := filepath.Join(r.dir, "registry.log")
	var err error
	if r.cmd, r.done, err = startLogged(r.o.Registry, log, "--config", filepath.Join(r.dir, "registry.conf")); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := r.status(ctx); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			r.stop()
			return fmt.Errorf("totp-registry did not answer within 15 s (log %s): %w", log, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *benchRegistry) status(ctx context.Context) (adminclient.Status, error) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.admin.Status(c)
}

func (r *benchRegistry) stop() { stopCmd(r.cmd, r.done) }

// startLogged starts a program with its output in logFile; done closes when it is reaped.
func startLogged(path, logFile string, args ...string) (*exec.Cmd, chan struct{}, error) {
	f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	return cmd, done, nil
}

// stopCmd sends SIGTERM, then SIGKILL after 10 s, and waits.
func stopCmd(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// applyLog is a slog.Handler that records, per simulated node, when each revision was applied
// (the Syncer's "applied" and "tokens.db switched to a snapshot" records, at Debug and Info).
type applyLog struct {
	node int
	rec  *applied
}

type applied struct {
	mu   sync.Mutex
	cond *sync.Cond
	rev  []int64     // highest revision applied, per node
	at   [][]revTime // every apply, per node
}

type revTime struct {
	rev int64
	at  time.Time
}

func (h applyLog) Enabled(context.Context, slog.Level) bool { return true }
func (h applyLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h applyLog) WithGroup(string) slog.Handler            { return h }
func (h applyLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "applied" && r.Message != "tokens.db switched to a snapshot" {
		return nil
	}
	var rev int64 = -1
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "revision" {
			switch a.Value.Kind() {
			case slog.KindInt64:
				rev = a.Value.Int64()
			case slog.KindUint64:
				rev = int64(a.Value.Uint64())
			default:
				rev, _ = strconv.ParseInt(a.Value.String(), 10, 64)
			}
			return false
		}
		return true
	})
	if rev < 0 {
		return nil
	}
	h.rec.mu.Lock()
	if rev > h.rec.rev[h.node] {
		h.rec.rev[h.node] = rev
	}
	h.rec.at[h.node] = append(h.rec.at[h.node], revTime{rev, r.Time})
	h.rec.cond.Broadcast()
	h.rec.mu.Unlock()
	return nil
}

// waitAll waits until every node applied rev, and returns when each first did.
func (a *applied) waitAll(rev int64, d time.Duration) ([]time.Time, error) {
	timer := time.AfterFunc(d, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(d)
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		all := true
		for _, r := range a.rev {
			all = all && r >= rev
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			behind := 0
			for _, r := range a.rev {
				if r < rev {
					behind++
				}
			}
			return nil, fmt.Errorf("%d of %d nodes did not apply revision %d within %v", behind, len(a.rev), rev, d)
		}
		a.cond.Wait()
	}
	out := make([]time.Time, len(a.rev))
	for i, list := range a.at {
		for _, e := range list {
			if e.rev >= rev {
				out[i] = e.at
				break
			}
		}
	}
	return out, nil
}

// latencyRun: one registry, n simulated nodes, o.Writes token state changes one after another.
func latencyRun(ctx context.Context, o syncOptions, backend string, n int) (latencyRow, error) {
	row := latencyRow{Backend: backend, Nodes: n, Writes: o.Writes}
	dir, err := os.MkdirTemp("", "pambench-sync-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	shm := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if shm, err = os.MkdirTemp("/dev/shm", "pambench-sync-"); err != nil {
			shm = ""
		} else {
			defer os.RemoveAll(shm)
		}
	}
	r, err := startBenchRegistry(ctx, o, backend, dir)
	if err != nil {
		return row, err
	}
	defer r.stop()
	const user = "benchuser"
	if _, err := r.admin.AddUser(ctx, adminclient.NewUser{Name: user, Scopes: []string{"bench"}}); err != nil {
		return row, err
	}
	tok, err := r.admin.AddToken(ctx, user, adminclient.NewToken{Name: "phone"})
	if err != nil {
		return row, err
	}
	rec := &applied{rev: make([]int64, n), at: make([][]revTime, n)}
	rec.cond = sync.NewCond(&rec.mu)
	nctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := 0; i < n; i++ {
		nn, err := r.admin.AddNode(ctx, fmt.Sprintf("bench-%03d", i), "bench")
		if err != nil {
			return row, err
		}
		base := dir
		if i >= 3 && shm != "" {
			base = shm
		}
		ndir := filepath.Join(base, fmt.Sprintf("node-%03d", i))
		if err := os.Mkdir(ndir, 0o700); err != nil {
			return row, err
		}
		cred := filepath.Join(ndir, "credential")
		if err := writeExact(cred, nn.Credential+"\n", 0o600); err != nil {
			return row, err
		}
		s, err := nodesync.New(nodesync.Options{
			Sync:  config.Sync{Registry: config.URLs{r.url}, CAFile: r.caFile, CredentialFile: cred},
			Store: store.Options{Dir: filepath.Join(ndir, "store"), Timeout: 5 * time.Second},
			Log:   slog.New(applyLog{node: i, rec: rec}),
		})
		if err != nil {
			return row, err
		}
		if err := os.Mkdir(filepath.Join(ndir, "store"), 0o700); err != nil {
			return row, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(nctx) }()
	}
	// Every node has its snapshot (which holds the token, so its revision is at least 1).
	// Revisions that change nothing a node sees (node add) reach it only with a bookmark, which
	// logs nothing, so this waits for the snapshot, not for the registry's revision.
	if _, err := rec.waitAll(1, time.Minute); err != nil {
		return row, fmt.Errorf("first sync: %w", err)
	}
	var all, each, writes []time.Duration
	for w := 0; w < o.Writes; w++ {
		if ctx.Err() != nil {
			return row, ctx.Err()
		}
		state := adminclient.Disabled
		if w%2 == 1 {
			state = adminclient.Active
		}
		start := time.Now()
		if _, err := r.admin.UpdateToken(ctx, user, tok.ID, adminclient.TokenChange{State: &state}); err != nil {
			return row, fmt.Errorf("write %d: %w", w, err)
		}
		writes = append(writes, time.Since(start))
		st, err := r.status(ctx)
		if err != nil {
			return row, err
		}
		at, err := rec.waitAll(st.Revision, 30*time.Second)
		if err != nil {
			return row, fmt.Errorf("write %d: %w", w, err)
		}
		var last time.Duration
		for _, t := range at {
			d := t.Sub(start)
			each = append(each, d)
			last = max(last, d)
		}
		all = append(all, last)
	}
	row.AllP50, row.AllP99 = quantile(all, 0.5), quantile(all, 0.99)
	row.NodeP50, row.NodeP99 = quantile(each, 0.5), quantile(each, 0.99)
	row.WriteP50, row.WriteP99 = quantile(writes, 0.5), quantile(writes, 0.99)
	row.Max = slices.Max(all)
	return row, nil
}

// rateRun: token adds through replicas registries on one store (replicas > 1: etcd only),
// o.Adders at a time each, for the same users (so replicas contend); o.Writes adds per replica.
func rateRun(ctx context.Context, o syncOptions, backend string, replicas int) (rateRow, error) {
	row := rateRow{Backend: backend, Replicas: replicas, Adders: o.Adders, Writes: replicas * o.Writes}
	dir, err := os.MkdirTemp("", "pambench-rate-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	var regs []*benchRegistry
	defer func() {
		for _, r := range regs {
			r.stop()
		}
	}()
	for i := range replicas {
		d := filepath.Join(dir, fmt.Sprintf("registry-%d", i))
		if err := os.Mkdir(d, 0o700); err != nil {
			return row, err
		}
		var r *benchRegistry
		if i == 0 {
			r, err = startBenchRegistry(ctx, o, backend, d)
		} else {
			r, err = regs[0].replica(ctx, d)
		}
		if err != nil {
			return row, err
		}
		regs = append(regs, r)
	}
	users := make([]string, 50)
	for i := range users {
		users[i] = "rate" + lettersN(i, 3)
		if _, err := regs[0].admin.AddUser(ctx, adminclient.NewUser{Name: users[i], Scopes: []string{"bench"}}); err != nil {
			return row, err
		}
	}
	var (
		mu    sync.Mutex
		took  []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for ri, r := range regs {
		jobs := make(chan int)
		for range o.Adders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					t0 := time.Now()
					_, err := r.admin.AddToken(ctx, users[i%len(users)], adminclient.NewToken{Name: fmt.Sprintf("r%d-%d", ri, i)})
					mu.Lock()
					if err != nil && first == nil {
						first = err
					}
					took = append(took, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
		go func() {
			defer close(jobs)
			for i := range o.Writes {
				select {
				case jobs <- i:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	row.Took = time.Since(start)
	if first != nil {
		return row, fmt.Errorf("token add: %w", first)
	}
	row.P50, row.P99 = quantile(took, 0.5), quantile(took, 0.99)
	return row, nil
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// fullSyncRun: a totp-syncd process syncing an empty set (its idle RSS), then a fresh one
// syncing o.Tokens tokens imported at the registry (time, peak RSS of both, idle RSS).
func fullSyncRun(ctx context.Context, o syncOptions, backend string) (fullSync, error) {
	res := fullSync{Backend: backend, Tokens: o.Tokens}
	dir, err := os.MkdirTemp("", "pambench-full-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	regDir := filepath.Join(dir, "registry")
	if err := os.Mkdir(regDir, 0o700); err != nil {
		return res, err
	}
	r, err := startBenchRegistry(ctx, o, backend, regDir)
	if err != nil {
		return res, err
	}
	defer r.stop()

	// Idle with nothing to sync.
	empty, err := startBenchSyncd(ctx, o, r, filepath.Join(dir, "empty"))
	if err != nil {
		return res, err
	}
	if _, err := empty.waitSynced(r, time.Minute); err != nil {
		empty.stop()
		return res, err
	}
	sleepCtx(ctx, o.Idle)
	res.SyncdIdleEmpty = pidStatus(empty.cmd.Process.Pid, "VmRSS")
	empty.stop()

	var csv strings.Builder
	for i := 0; i < o.Tokens; i++ {
		fmt.Fprintf(&csv, "bu%s,%s,bulk\n", lettersN(i, 5), b32(randBytes(20)))
	}
	stopSampling := make(chan struct{})
	peaks := sampleRSS(r.cmd.Process.Pid, stopSampling)
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
	}()
	start := time.Now()
	if _, err := r.admin.ImportCSV(ctx, strings.NewReader(csv.String()), adminclient.ImportOptions{Scope: "bench"}); err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	res.Import = time.Since(start)
	fmt.Fprintf(o.Log, "sync bench: imported %d tokens in %v\n", o.Tokens, res.Import.Round(time.Millisecond))

	full, err := startBenchSyncd(ctx, o, r, filepath.Join(dir, "full"))
	if err != nil {
		return res, err
	}
	defer full.stop()
	if res.Sync, err = full.waitSynced(r, 5*time.Minute); err != nil {
		return res, err
	}
	res.SyncdHWM = pidStatus(full.cmd.Process.Pid, "VmHWM")
	res.RegistryHWM = pidStatus(r.cmd.Process.Pid, "VmHWM")
	res.RegistryRSS = pidStatus(r.cmd.Process.Pid, "VmRSS")
	close(stopSampling)
	p := <-peaks
	res.RegistryAnonPeak, res.RegistryFilePeak = p[0], p[1]
	sleepCtx(ctx, o.Idle)
	res.SyncdIdleFull = pidStatus(full.cmd.Process.Pid, "VmRSS")
	return res, nil
}

type benchSyncd struct {
	cmd   *exec.Cmd
	done  chan struct{}
	store string
	start time.Time
}

func startBenchSyncd(ctx context.Context, o syncOptions, r *benchRegistry, dir string) (*benchSyncd, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	nn, err := r.admin.AddNode(ctx, "bench-"+filepath.Base(dir), "bench")
	if err != nil {
		return nil, err
	}
	cred := filepath.Join(dir, "credential")
	conf := filepath.Join(dir, "pam_totp.conf")
	s := &benchSyncd{store: filepath.Join(dir, "store")}
	if err := writeExact(cred, nn.Credential+"\n", 0o600); err != nil {
		return nil, err
	}
	if err := writeExact(conf, fmt.Sprintf("[store]\ndir = %q\n\n[sync]\nregistry = %q\nca_file = %q\n"+
		"credential_file = %q\nmetrics_listen = \"\"\nverify_socket = \"none\"\n", s.store, r.url, r.caFile, cred), 0o644); err != nil {
		return nil, err
	}
	s.start = time.Now()
	if s.cmd, s.done, err = startLogged(o.Syncd, filepath.Join(dir, "syncd.log"), "--config", conf); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *benchSyncd) stop() { stopCmd(s.cmd, s.done) }

// waitSynced waits until tokens.db holds the registry's current revision; it returns the time
// since the process started.
func (s *benchSyncd) waitSynced(r *benchRegistry, d time.Duration) (time.Duration, error) {
	st, err := r.status(context.Background())
	if err != nil {
		return 0, err
	}
	t := store.NewTokens(store.Options{Dir: s.store, Timeout: time.Second})
	for time.Since(s.start) < d {
		select {
		case <-s.done:
			return 0, errors.New("totp-syncd exited")
		default:
		}
		if m, err := t.Meta(); err == nil && int64(m.Revision) >= st.Revision {
			return time.Since(s.start), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("totp-syncd did not sync revision %d within %v", st.Revision, d)
}

// pidStatus reads a kB field of /proc/PID/status (VmHWM, VmRSS); -1 when unreadable.
func pidStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func lettersN(i, width int) string {
	b := make([]byte, width)
	for k := width - 1; k >= 0; k-- {
		b[k] = 'a' + byte(i%26)
		i /= 26
	}
	return string(b)
}

func writeExact(path, text string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// reportSync prints the Markdown section of the sync benchmark.
func reportSync(w io.Writer, o syncOptions, res syncResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	mb := func(kb int64) string {
		if kb < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f MB", float64(kb)/1024)
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(w, "### Admin write to applied on every node\n\n")
	fmt.Fprintf(w, "| store | nodes | writes | all nodes p50 ms | all nodes p99 ms | max ms | per node p50 ms | per node p99 ms | admin request p50 / p99 ms |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range res.Latency {
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s / %s |\n", r.Backend, r.Nodes, r.Writes, ms(r.AllP50), ms(r.AllP99),
			ms(r.Max), ms(r.NodeP50), ms(r.NodeP99), ms(r.WriteP50), ms(r.WriteP99))
	}
	fmt.Fprintf(w, "\n### Token adds per second\n\n")
	fmt.Fprintf(w, "| store | replicas | adds at once per replica | adds | adds/s | one add p50 / p99 ms |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range res.Rate {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %s / %s |\n", r.Backend, r.Replicas, r.Adders, r.Writes,
			float64(r.Writes)/r.Took.Seconds(), ms(r.P50), ms(r.P99))
	}
	for _, f := range res.Full {
		fmt.Fprintf(w, "\n### Full sync of %d tokens, %s store\n\n", f.Tokens, f.Backend)
		fmt.Fprintf(w, "| measure | value |\n|---|---:|\n")
		fmt.Fprintf(w, "| CSV import at the registry (`POST /v1/admin/import/csv`) | %s ms |\n", ms(f.Import))
		fmt.Fprintf(w, "| totp-syncd start to tokens.db switched (fresh node) | %s ms |\n", ms(f.Sync))
		fmt.Fprintf(w, "| totp-syncd peak RSS (VmHWM) during the sync | %s |\n", mb(f.SyncdHWM))
		fmt.Fprintf(w, "| totp-syncd RSS idle, no tokens (after %v) | %s |\n", o.Idle, mb(f.SyncdIdleEmpty))
		fmt.Fprintf(w, "| totp-syncd RSS idle, %d tokens (after %v) | %s |\n", f.Tokens, o.Idle, mb(f.SyncdIdleFull))
		fmt.Fprintf(w, "| totp-registry peak RSS (VmHWM), import and one snapshot | %s |\n", mb(f.RegistryHWM))
		fmt.Fprintf(w, "| totp-registry RSS after the sync | %s |\n", mb(f.RegistryRSS))
		fmt.Fprintf(w, "| totp-registry peak anonymous memory (RssAnon: heap, stacks) | %s |\n", mb(f.RegistryAnonPeak))
		fmt.Fprintf(w, "| totp-registry peak resident file pages (RssFile: bbolt's mmapped database, reclaimable page cache) | %s |\n", mb(f.RegistryFilePeak))
	}

	fmt.Fprintf(w, "\n### Against the targets (2 cores)\n\n| target | store | measured | |\n|---|---|---:|---|\n")
	for _, r := range res.Latency {
		if r.Nodes == 100 {
			fmt.Fprintf(w, "| p99 write to applied on all 100 nodes ≤ 250 ms | %s | %s ms | %s |\n", r.Backend, ms(r.AllP99), mark(r.AllP99 <= 250*time.Millisecond))
		}
	}
	for _, f := range res.Full {
		if f.Tokens == 100000 {
			fmt.Fprintf(w, "| full sync of 100,000 tokens ≤ 3 s | %s | %s ms | %s |\n", f.Backend, ms(f.Sync), mark(f.Sync <= 3*time.Second))
			fmt.Fprintf(w, "| totp-syncd ≤ 150 MB during a resync | %s | %s | %s |\n", f.Backend, mb(f.SyncdHWM), mark(f.SyncdHWM <= 150*1024))
			fmt.Fprintf(w, "| totp-registry ≤ 150 MB at 100,000 tokens | %s | %s | %s |\n", f.Backend, mb(f.RegistryHWM), mark(f.RegistryHWM <= 150*1024))
		}
		fmt.Fprintf(w, "| totp-syncd ≤ 30 MB steady | %s | %s (empty), %s (%d tokens) | %s |\n", f.Backend, mb(f.SyncdIdleEmpty),
			mb(f.SyncdIdleFull), f.Tokens, mark(f.SyncdIdleFull <= 30*1024 && f.SyncdIdleEmpty <= 30*1024))
	}
	if f := res.Failover; f != nil {
		fmt.Fprintf(w, "| fail-over of a node after its replica is killed, p99 ≤ 2 s, no resync | etcd | p50 %s ms, p99 %s ms, max %s ms over %d kills; %.0f resyncs | %s |\n",
			ms(f.P50), ms(f.P99), ms(f.Max), f.Kills, f.Resyncs, mark(f.P99 <= 2*time.Second && f.Resyncs == 0))
	}
}
