package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pam-totp/pam-totp/pkg/promtext"
)

// failoverRow is how fast a node moved to the other registry replica after the one it followed
// was killed with SIGKILL, over Kills kills (the replicas take turns), and how many full resyncs
// the node did meanwhile (there must be none: both replicas announce one store epoch).
type failoverRow struct {
	Kills    int
	P50, P99 time.Duration
	Max      time.Duration
	Resyncs  float64
}

// failoverRun starts two registry replicas on etcd and one totp-syncd that lists both, then kills
// the replica the node follows Kills times (restarting it after each move) and times each move
// by the node's metric pam_totp_sync_replica_info.
func failoverRun(ctx context.Context, o syncOptions, kills int) (failoverRow, error) {
	row := failoverRow{Kills: kills}
	dir, err := os.MkdirTemp("", "pambench-failover-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	var regs [2]*benchRegistry
	for i := range regs {
		d := filepath.Join(dir, fmt.Sprintf("registry%d", i))
		if err := os.Mkdir(d, 0o700); err != nil {
			return row, err
		}
		if i == 0 {
			regs[0], err = startBenchRegistry(ctx, o, "etcd", d)
		} else {
			regs[1], err = regs[0].replica(ctx, d)
		}
		if err != nil {
			return row, err
		}
		defer regs[i].stop()
	}
	nodeDir := filepath.Join(dir, "node")
	if err := os.Mkdir(nodeDir, 0o700); err != nil {
		return row, err
	}
	nn, err := regs[0].admin.AddNode(ctx, "bench-failover", "bench")
	if err != nil {
		return row, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return row, err
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	cred, conf := filepath.Join(nodeDir, "credential"), filepath.Join(nodeDir, "pam_totp.conf")
	if err := writeExact(cred, nn.Credential+"\n", 0o600); err != nil {
		return row, err
	}
	if err := writeExact(conf, fmt.Sprintf("[store]\ndir = %q\n\n[sync]\nregistry = [%q, %q]\nca_file = %q\n"+
		"credential_file = %q\nmetrics_listen = \"127.0.0.1:%d\"\nverify_socket = \"none\"\n",
		filepath.Join(nodeDir, "store"), regs[0].url, regs[1].url, regs[0].caFile, cred, port), 0o644); err != nil {
		return row, err
	}
	cmd, done, err := startLogged(o.Syncd, filepath.Join(nodeDir, "syncd.log"), "--config", conf)
	if err != nil {
		return row, err
	}
	defer stopCmd(cmd, done)
	following := func(r *benchRegistry) bool {
		s, err := promtext.Scrape(metrics)
		v, ok := s.Get("pam_totp_sync_replica_info", fmt.Sprintf("{url=%q}", r.url))
		return err == nil && ok && v == 1
	}
	waitFor := func(what string, d time.Duration, cond func() bool) error {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			if cond() {
				return nil
			}
		}
		return fmt.Errorf("%s: not within %v (log %s)", what, d, filepath.Join(nodeDir, "syncd.log"))
	}
	if err := waitFor("the node follows replica A", 30*time.Second, func() bool { return following(regs[0]) }); err != nil {
		return row, err
	}
	resyncs := func() float64 {
		s, err := promtext.Scrape(metrics)
		if err != nil {
			return -1
		}
		return s.Sum("pam_totp_sync_resyncs_total")
	}
	before := resyncs()
	var took []time.Duration
	for k := 0; k < kills; k++ {
		dead, other := regs[k%2], regs[(k+1)%2]
		start := time.Now()
		if err := dead.cmd.Process.Kill(); err != nil {
			return row, err
		}
		<-dead.done
		if err := waitFor("the node moves to the other replica", 30*time.Second, func() bool { return following(other) }); err != nil {
			return row, err
		}
		took = append(took, time.Since(start))
		if err := dead.start(ctx); err != nil {
			return row, err
		}
	}
	row.P50, row.P99, row.Max = quantile(took, 0.5), quantile(took, 0.99), quantile(took, 1)
	row.Resyncs = resyncs() - before
	return row, nil
}
