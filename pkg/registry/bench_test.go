package registry

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// fill writes n tokens of n/10 users of scope "alpha", 1000 per revision.
func fill(tb testing.TB, e *env, n int) {
	tb.Helper()
	secret := make([]byte, 20)
	now := time.Now().UTC()
	for start := 0; start < n; start += 1000 {
		_, err := e.srv.change(context.Background(), "bench", "fill", "x", "", func(x *txn) error {
			for i := start; i < min(start+1000, n); i++ {
				u := User{Name: fmt.Sprintf("user%06d", i/10), Scopes: []string{"alpha"}}
				t := token.Token{User: u.Name, ID: fmt.Sprintf("%08x", i), Name: "phone", Algorithm: "SHA1",
					Digits: 6, Period: 30, Secret: secret, State: token.Active, Created: now}
				if err := x.putToken(u, t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkSnapshot100k: a node's full snapshot of 100,000 tokens over TLS, read and checked with
// syncframe.Snapshot as totp-syncd does (client and server share the machine's cores).
func BenchmarkSnapshot100k(b *testing.B) {
	e := newEnv(b, envOptions{})
	fill(b, e, 100000)
	cred := e.addNode("n1", "alpha")
	waitIndex(b, e)
	runtime.GC()
	var ms runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		resp := e.nodeGet(cred, "/v1/sync/snapshot")
		_, d, err := syncframe.Snapshot(syncframe.NewReader(resp.Body), func(syncframe.Frame) error { return nil })
		resp.Body.Close()
		if err != nil || d.Count() != 100000 {
			b.Fatalf("snapshot: %v", err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMB")
}

// BenchmarkWatchLatency: an admin token write until a watching node has the batch.
func BenchmarkWatchLatency(b *testing.B) {
	e := newEnv(b, envOptions{})
	e.addUser("ann", "alpha")
	n := e.follow(e.addNode("n1", "alpha"))
	n.syncTo(e.store.Rev())
	b.ResetTimer()
	for b.Loop() {
		e.addToken("ann")
		n.nextBatch()
	}
}

func waitIndex(tb testing.TB, e *env) {
	for e.srv.idx.revision() < e.store.Rev() {
		time.Sleep(10 * time.Millisecond)
	}
}
