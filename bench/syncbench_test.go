//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
)

// TestSyncBenchSmoke runs the sync benchmark with two nodes, a few writes and a few hundred
// tokens, so that `pambench sync` cannot rot between benchmark runs.
func TestSyncBenchSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the registry and totp-syncd insist on root-owned key, credential and store files")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	o := syncOptions{Nodes: []int{2}, Writes: 5, Tokens: 300, Idle: 100 * time.Millisecond, Log: &testLog{t},
		Registry: filepath.Join(root, "build/totp-registry"), Syncd: filepath.Join(root, "build/totp-syncd"),
		Backends: []string{"bbolt"}, Adders: 2, Failovers: 2}
	if _, err := etcdtest.Binary(); err == nil {
		o.Backends = append(o.Backends, "etcd")
	} else {
		t.Logf("the etcd backend left out: %v", err)
	}
	for _, f := range []string{o.Registry, o.Syncd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing: run make build first", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := runSync(ctx, o)
	if err != nil {
		t.Fatalf("runSync() = %v", err)
	}
	if len(res.Latency) != len(o.Backends) || res.Latency[0].Nodes != 2 || res.Latency[0].AllP99 <= 0 {
		t.Errorf("latency rows = %+v, want one row of 2 nodes with a time per store", res.Latency)
	}
	if want := 2*len(o.Backends) - 1; len(res.Rate) != want || res.Rate[0].Took <= 0 {
		t.Errorf("write rate rows = %+v, want %d with a time", res.Rate, want)
	}
	if len(res.Full) != len(o.Backends) {
		t.Fatalf("full sync rows = %+v, want one per store", res.Full)
	}
	for _, f := range res.Full {
		if f.Sync <= 0 || f.SyncdHWM <= 0 || f.RegistryHWM <= 0 {
			t.Errorf("full sync = %+v, want a time and both peaks", f)
		}
	}
	if etcd := slices.Contains(o.Backends, "etcd"); etcd != (res.Failover != nil) {
		t.Errorf("fail-over row = %+v with backends %v, want one exactly when etcd is measured", res.Failover, o.Backends)
	} else if etcd && (res.Failover.Kills != 2 || res.Failover.P50 <= 0 || res.Failover.Resyncs != 0) {
		t.Errorf("fail-over row = %+v, want 2 kills, a time and no resync", *res.Failover)
	}
	var b bytes.Buffer
	reportSync(&b, o, res)
	for _, want := range []string{"### Admin write to applied on every node", "| bbolt | 2 | 5 |", "### Full sync of 300 tokens, bbolt store",
		"### Token adds per second", "| bbolt | 1 | 2 | 5 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("reportSync() lacks %q:\n%s", want, b.String())
		}
	}
}
