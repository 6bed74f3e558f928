package totp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCodeAgreesWithOathtool compares Code with the oathtool binary (OATH
// Toolkit, Debian package oathtool) on random secrets, algorithms, digit
// counts, periods and instants. Each oathtool call prints a window of
// consecutive codes, so 200 calls check 4,000 codes in well under a second.
// The secret goes to oathtool on stdin, half of the time as hex and half as
// base32 (which also checks EncodeSecret).
func TestCodeAgreesWithOathtool(t *testing.T) {
	t.Parallel()
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not installed (Debian: apt-get install oathtool); skipping the comparison with OATH Toolkit")
	}
	const calls, window = 200, 20
	const seed = 20240601 // fixed, so that a failure can be reproduced

	type job struct {
		secret []byte
		p      Params
		unix   int64
		base32 bool
	}
	rng := rand.New(rand.NewPCG(seed, 0x6f617468))
	jobs := make([]job, calls)
	for i := range jobs {
		jobs[i] = job{
			secret: randBytes(rng, MinSecretLen+rng.IntN(MaxSecretLen-MinSecretLen+1)),
			p: Params{
				Algorithm: []Algorithm{SHA1, SHA256, SHA512}[rng.IntN(3)],
				Digits:    MinDigits + rng.IntN(MaxDigits-MinDigits+1),
				Period:    []int{30, 60, MinPeriod + rng.IntN(MaxPeriod-MinPeriod+1)}[rng.IntN(3)],
			},
			unix:   rng.Int64N(1 << 36), // until the year 4147
			base32: i%2 == 1,
		}
	}
	jobs[0] = job{secret: seed20, p: Params{SHA1, 8, 30}, unix: 59} // RFC 6238, as a sanity check

	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			args := []string{
				"--totp=" + string(j.p.Algorithm),
				"--digits=" + fmt.Sprint(j.p.Digits),
				"--time-step-size=" + fmt.Sprintf("%ds", j.p.Period),
				"--now=@" + fmt.Sprint(j.unix),
				"--window=" + fmt.Sprint(window-1),
			}
			key := hex.EncodeToString(j.secret)
			if j.base32 {
				args = append(args, "--base32")
				key = EncodeSecret(j.secret)
			}
			cmd := exec.Command(oathtool, append(args, "-")...)
			cmd.Stdin = strings.NewReader(key + "\n")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("oathtool %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
				return
			}
			want := strings.Fields(string(out))
			if len(want) != window {
				t.Errorf("oathtool %s printed %d codes, want %d", strings.Join(args, " "), len(want), window)
				return
			}
			step := Step(time.Unix(j.unix, 0), j.p.Period)
			for k, w := range want {
				if got := Code(j.secret, j.p, step+uint64(k)); got != w {
					t.Errorf("job %d: Code(%x, %v, %d) = %q, want %q (oathtool %s)",
						i, j.secret, j.p, step+uint64(k), got, w, strings.Join(args, " "))
					return
				}
			}
		}()
	}
	wg.Wait()
}
