//go:build linux

package sync

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// bulkTokens is how many tokens the resync test imports.
const bulkTokens = 100_000

// bulkCSV is an import file of n users with one token each; user names are letters only.
func bulkCSV(n int, prefix string) string {
	var b strings.Builder
	b.Grow(n * 50)
	secret := make([]byte, 20)
	for i := 0; i < n; i++ {
		if _, err := rand.Read(secret); err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "%s%s,%s,bulk\n", prefix, letters(i, 5), base32NoPad(secret))
	}
	return b.String()
}

// letters writes i in base 26 with a..z, width digits.
func letters(i, width int) string {
	b := make([]byte, width)
	for k := width - 1; k >= 0; k-- {
		b[k] = 'a' + byte(i%26)
		i /= 26
	}
	return string(b)
}

func randDuration(lo, hi time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo)))
	if err != nil {
		panic(err)
	}
	return lo + time.Duration(n.Int64())
}

// TestSyncdKilledDuringResync: a node that was down across a compaction resyncs 100,000
// tokens from a snapshot, and its totp-syncd is killed (SIGKILL) five times during the resync.
// A reader that opens tokens.db read-only again and again must always find one complete set,
// the old or the new, with meta's count equal to the records; a login during the resync answers
// within 2 s with the right result; the node ends equal to the registry.
func TestSyncdKilledDuringResync(t *testing.T) {
	needRoot(t)
	r, n, user, tok := nodeWithToken(t)
	_, oldMeta := n.digest()
	oldCount := oldMeta.Count

	n.proc.kill()
	csv := bulkCSV(bulkTokens, "bk")
	start := time.Now()
	res, err := r.admin.ImportCSV(ctx(t), strings.NewReader(csv), adminclient.ImportOptions{Scope: scope})
	if err != nil {
		t.Fatalf("ImportCSV(%d tokens): %v", bulkTokens, err)
	}
	t.Logf("CSV import of %d tokens (%d users created) at the registry: %v in %d revisions",
		res.Added, res.UsersCreated, time.Since(start).Round(time.Millisecond), res.Revisions)
	if res.Added != bulkTokens {
		t.Fatalf("ImportCSV added %d tokens, want %d", res.Added, bulkTokens)
	}
	if _, err := r.admin.Compact(ctx(t), 1); err != nil {
		t.Fatalf("Compact(1): %v", err)
	}
	newCount := oldCount + bulkTokens

	// The reader: every open sees meta's count equal to the records, old or new.
	var (
		stop            atomic.Bool
		opens, sawOld   atomic.Int64
		sawNew, lockErr atomic.Int64
		mu              sync.Mutex
		bad             []string
		wg              sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			d, m, err := store.NewTokens(store.Options{Dir: n.storeDir, Timeout: 3 * time.Second}).Digest()
			if err != nil {
				if store.IsLockTimeout(err) {
					lockErr.Add(1)
					continue
				}
				mu.Lock()
				bad = append(bad, fmt.Sprintf("open tokens.db: %v", err))
				mu.Unlock()
				continue
			}
			opens.Add(1)
			switch {
			case !d.Matches(m.Count, m.Digest):
				mu.Lock()
				bad = append(bad, fmt.Sprintf("records give %d/%s, meta %d/%s (revision %d)", d.Count(), d, m.Count, m.Digest, m.Revision))
				mu.Unlock()
			case d.Count() == oldCount:
				sawOld.Add(1)
			case d.Count() == newCount:
				sawNew.Add(1)
			default:
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%d records: neither the old %d nor the new %d", d.Count(), oldCount, newCount))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { stop.Store(true); wg.Wait() })

	// Five kills at random points of the resync, each checked to have hit it.
	step := nextStep(t) // code(step) stays valid for 60 s, code(step+1) for 90
	during := 0
	var logins []time.Duration
	for k := 0; k < 5; k++ {
		started := time.Now()
		n.start()
		// Wait until the snapshot is under way, then a random moment more. Even kills wait
		// for the staging file (records arriving), odd ones may hit the wait for the registry.
		eventually(t, 10*time.Second, "the resync starts", func() (bool, error) {
			return n.logCount("full resync needed")+n.logCount("resyncing from a snapshot") > k, nil
		})
		if k%2 == 0 {
			eventually(t, 20*time.Second, "the staging file appears", func() (bool, error) {
				m, _ := filepath.Glob(filepath.Join(n.storeDir, ".tokens.db.staging-*"))
				return len(m) > 0, nil
			})
			time.Sleep(randDuration(0, 300*time.Millisecond))
		} else {
			time.Sleep(randDuration(0, 400*time.Millisecond))
		}
		if k == 2 {
			// A login while the resync runs: served from the old set, quickly.
			res := n.login(user, code(tok, step))
			res.Want(t, "login during the resync", pamtest.Success, -1)
			logins = append(logins, res.Elapsed)
			if res.Elapsed > 2*time.Second {
				t.Errorf("login during the resync took %v, want < 2s", res.Elapsed)
			}
		}
		m, err := n.meta()
		if err == nil && m.Count == oldCount {
			during++
		}
		staged, _ := filepath.Glob(filepath.Join(n.storeDir, ".tokens.db.staging-*"))
		n.proc.kill()
		t.Logf("kill %d: %v after start, tokens.db had %d records, %d staging files", k+1,
			time.Since(started).Round(time.Millisecond), m.Count, len(staged))
	}
	if got := n.logCount("removed the staging files"); got == 0 {
		t.Errorf("no restart removed the staging file of the killed resync (log: \"removed the staging files\")")
	}
	if during == 0 {
		t.Errorf("no kill landed during the resync (all after the switch): the test did not test it")
	}
	start = time.Now()
	n.start()
	rev := r.rev()
	n.waitRev(rev, 60*time.Second)
	t.Logf("final resync of %d records after the kills: %v", newCount, time.Since(start).Round(time.Millisecond))
	res2 := n.login(user, code(tok, step+1))
	res2.Want(t, "login after the resync", pamtest.Success, -1)
	stop.Store(true)
	wg.Wait()
	d, m := n.digest()
	if d.Count() != newCount || !d.Matches(m.Count, m.Digest) {
		t.Errorf("after the resync: %d records (meta %d), want %d", d.Count(), m.Count, newCount)
	}
	t.Logf("reader: %d opens (%d old set, %d new set, %d lock timeouts); %d of 5 kills during the resync; login during it %v",
		opens.Load(), sawOld.Load(), sawNew.Load(), lockErr.Load(), during, logins)
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("the reader saw %d inconsistent opens, first: %s", len(bad), bad[0])
	}
	if opens.Load() == 0 {
		t.Error("the reader never opened tokens.db")
	}
}
