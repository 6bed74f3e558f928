//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"time"
)

// runWorkers starts one worker process per job, waits until all are ready, starts them at once
// and collects their results.
func runWorkers(ctx context.Context, exe string, jobs []job) ([]result, error) {
	type worker struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		ctl   *bufio.Reader
		ctlR  *os.File
	}
	ws := make([]*worker, len(jobs))
	defer func() {
		for _, w := range ws {
			if w == nil {
				continue
			}
			w.stdin.Close()
			w.ctlR.Close()
			if w.cmd.ProcessState == nil {
				_ = w.cmd.Process.Kill()
				_ = w.cmd.Wait()
			}
		}
	}()
	for i, j := range jobs {
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.ExtraFiles = []*os.File{wr} // fd 3
		stdin, err := cmd.StdinPipe()
		if err != nil {
			r.Close()
			wr.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			r.Close()
			wr.Close()
			return nil, fmt.Errorf("start worker: %w", err)
		}
		wr.Close()
		w := &worker{cmd: cmd, stdin: stdin, ctl: bufio.NewReader(r), ctlR: r}
		ws[i] = w
		b, _ := json.Marshal(j)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			return nil, fmt.Errorf("send job: %w", err)
		}
	}
	for _, w := range ws {
		if l, err := readLine(w.ctl); err != nil || l != "ready" {
			return nil, fmt.Errorf("worker did not get ready: %q %v", l, err)
		}
	}
	for _, w := range ws {
		if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
			return nil, err
		}
	}
	results := make([]result, len(ws))
	for i, w := range ws {
		if err := json.NewDecoder(w.ctl).Decode(&results[i]); err != nil {
			return nil, fmt.Errorf("worker result: %w", err)
		}
		if err := w.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		if results[i].Err != "" {
			return nil, errors.New("worker: " + results[i].Err)
		}
	}
	return results, nil
}

// row is one line of the results table.
type row struct {
	Module       string
	N, Pool      int
	Procs        int
	Logins       int
	Wrong        int
	P50, P99     time.Duration
	Max          time.Duration
	Mean         time.Duration
	AuthP50      time.Duration
	Elapsed      time.Duration
	Throughput   float64
	WrongResults int
	Unexpected   map[string]int
	Lost         int
	Waits        int
	WaitTime     time.Duration
	BaseRSS      int64 // KiB, the largest worker's RSS before its first transaction
	MaxRSS       int64 // KiB, the largest worker peak
	ChildRSS     int64 // KiB, the largest child peak (pam_totp's helper)
	// DaemonRSS and DaemonHWM are totp-syncd's VmRSS and VmHWM (KiB) after a socket row.
	DaemonRSS, DaemonHWM int64
	DaemonCPU            time.Duration // totp-syncd's CPU time per login of a socket row
	// SyslogPerLogin is how many syslog messages arrived per login (when the sink runs).
	SyslogPerLogin float64
	last           map[string]lastLogin
}

func merge(rs []result, procs int) row {
	r := row{Procs: procs, Unexpected: map[string]int{}, last: map[string]lastLogin{}}
	var lat, auth []int64
	start, end := int64(math.MaxInt64), int64(0)
	var sum int64
	for _, x := range rs {
		lat = append(lat, x.Lat...)
		auth = append(auth, x.Auth...)
		for _, v := range x.Lat {
			sum += v
		}
		start, end = min(start, x.Start), max(end, x.End)
		r.Logins += x.Valid + x.Wrong
		r.Wrong += x.Wrong
		r.WrongResults += x.WrongResults
		for k, v := range x.Unexpected {
			r.Unexpected[k] += v
		}
		r.Waits += x.Waits
		r.WaitTime = max(r.WaitTime, x.WaitTime)
		r.BaseRSS = max(r.BaseRSS, x.BaseRSS)
		r.MaxRSS = max(r.MaxRSS, x.MaxRSS)
		r.ChildRSS = max(r.ChildRSS, x.ChildRSS)
		for u, l := range x.Last {
			r.last[u] = l
		}
	}
	r.P50, r.P99, r.Max = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 1)
	r.AuthP50 = percentile(auth, 0.50)
	if len(lat) > 0 {
		r.Mean = time.Duration(sum / int64(len(lat)))
	}
	// Time spent waiting for a fresh step is not login time.
	r.Elapsed = time.Duration(end-start) - r.WaitTime
	if r.Elapsed > 0 {
		r.Throughput = float64(r.Logins) / r.Elapsed.Seconds()
	}
	return r
}

// percentile is the nearest-rank percentile of ns values.
func percentile(ns []int64, q float64) time.Duration {
	if len(ns) == 0 {
		return 0
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return time.Duration(s[max(i, 0)])
}

func (r row) summary() string {
	return fmt.Sprintf("%s, %d+%d users, %d procs: %d logins, p50 %s p99 %s max %s (auth p50 %s), %.0f/s, "+
		"%d wrong results, %d lost, rss %d->%d KiB, child %d KiB, %d waits, %.1f syslog lines/login",
		r.Module, r.N, r.Pool, r.Procs, r.Logins, ms(r.P50), ms(r.P99), ms(r.Max), ms(r.AuthP50), r.Throughput,
		r.WrongResults, r.Lost, r.BaseRSS, r.MaxRSS, r.ChildRSS, r.Waits, r.SyslogPerLogin)
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
