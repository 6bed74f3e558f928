//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// report prints the results as Markdown.
func report(w io.Writer, o options, rows []row, prof []profileRow) {
	fmt.Fprintf(w, "Parameters: %d logins per row (%.0f%% with a wrong code), pool of %d NSS users, "+
		"window ±%d step, GA `RATE_LIMIT %d %d` (the driver sends one user at most %d attempts per %d s), seed %d.\n\n",
		o.Logins, 100*o.WrongFrac, o.Pool, o.Window, gaRateAttempts, gaRateInterval, maxPerUser, gaRateInterval, o.Seed)
	fmt.Fprintln(w, "| module | users in db | procs | logins | p50 ms | p99 ms | logins/s | wrong results | state lost | host RSS MiB: before → peak | helper RSS MiB | totp-syncd RSS MiB: after (peak) |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	var notes []string
	for _, r := range rows {
		helper := "–"
		if r.ChildRSS > 0 {
			helper = mib(r.ChildRSS)
		}
		daemon := "–"
		if r.DaemonRSS > 0 {
			daemon = fmt.Sprintf("%s (%s)", mib(r.DaemonRSS), mib(r.DaemonHWM))
		}
		users := usersIn(r)
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %.0f | %d | %d | %s → %s | %s | %s |\n",
			r.Module, users, r.Procs, r.Logins, ms(r.P50), ms(r.P99), r.Throughput,
			r.WrongResults, r.Lost, mib(r.BaseRSS), mib(r.MaxRSS), helper, daemon)
		if len(r.Unexpected) > 0 {
			var ks []string
			for k, v := range r.Unexpected {
				ks = append(ks, fmt.Sprintf("%d× %s", v, k))
			}
			slices.Sort(ks)
			notes = append(notes, fmt.Sprintf("%s, %s users, %d procs: %s", r.Module, usersIn(r), r.Procs, strings.Join(ks, "; ")))
		}
		if r.DaemonCPU > 0 {
			notes = append(notes, fmt.Sprintf("%s, %s users, %d procs: totp-syncd used %s ms of CPU per login",
				r.Module, usersIn(r), r.Procs, ms(r.DaemonCPU)))
		}
		if r.Waits > 0 {
			notes = append(notes, fmt.Sprintf("%s, %s users, %d procs: %d waits for a fresh time step (%s, not counted in logins/s)",
				r.Module, usersIn(r), r.Procs, r.Waits, r.WaitTime.Round(1e6)))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	targets(w, rows)
	if len(prof) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Where a pam_totp login's time goes, at the largest size:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| part | p50 ms | p99 ms |")
		fmt.Fprintln(w, "|---|--:|--:|")
		for _, p := range prof {
			fmt.Fprintf(w, "| %s | %s | %s |\n", p.What, ms(p.P50), ms(p.P99))
		}
	}
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// targets prints pam_totp (socket) against pam_google_authenticator at each size: p50 (1
// process) at most half of GA's, logins/s (most processes) at least twice GA's, nothing wrong
// or lost, and totp-syncd's RSS at 1,000,000 users at most 30 MB.
func targets(w io.Writer, rows []row) {
	find := func(module string, n, procs int) *row {
		for i := range rows {
			if rows[i].Module == module && rows[i].N == n && rows[i].Procs == procs {
				return &rows[i]
			}
		}
		return nil
	}
	maxProcs := 0
	var sizes []int
	for _, r := range rows {
		maxProcs = max(maxProcs, r.Procs)
		if r.Module == "pam_totp (socket)" && !slices.Contains(sizes, r.N) {
			sizes = append(sizes, r.N)
		}
	}
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var lines []string
	for _, n := range sizes {
		s1, g1 := find("pam_totp (socket)", n, 1), find("pam_google_authenticator", n, 1)
		s8, g8 := find("pam_totp (socket)", n, maxProcs), find("pam_google_authenticator", n, maxProcs)
		if s1 != nil && g1 != nil {
			lines = append(lines, fmt.Sprintf("| %s | p50, 1 process ≤ 0.5 × GA's | %s ms vs %s ms (≤ %s) | %s |",
				thousands(n), ms(s1.P50), ms(g1.P50), ms(g1.P50/2), met(2*s1.P50 <= g1.P50)))
		}
		if s8 != nil && g8 != nil && maxProcs > 1 {
			lines = append(lines, fmt.Sprintf("| %s | logins/s, %d processes ≥ 2 × GA's | %.0f vs %.0f (≥ %.0f) | %s |",
				thousands(n), maxProcs, s8.Throughput, g8.Throughput, 2*g8.Throughput, met(s8.Throughput >= 2*g8.Throughput)))
		}
		bad := 0
		for _, r := range []*row{s1, s8} {
			if r != nil {
				bad += r.WrongResults + r.Lost
			}
		}
		lines = append(lines, fmt.Sprintf("| %s | 0 wrong results, 0 lost records | %d | %s |", thousands(n), bad, met(bad == 0)))
		if n >= 1000000 {
			var rss int64
			for _, r := range []*row{s1, s8} {
				if r != nil {
					rss = max(rss, r.DaemonRSS)
				}
			}
			lines = append(lines, fmt.Sprintf("| %s | totp-syncd RSS ≤ 30 MB | %s MiB | %s |", thousands(n), mib(rss), met(rss > 0 && rss*1024 <= 30e6)))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Against the targets (pam_totp through the resident verifier against pam_google_authenticator, same run):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| users in db | target | measured | |")
	fmt.Fprintln(w, "|--:|---|--:|---|")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// isFloor says whether r is the pam_permit floor's row.
func isFloor(r row) bool { return strings.HasSuffix(r.Module, "(floor)") }

// usersIn is the "users in db" of a row: synthetic + pool, the pool alone (the claims row,
// whose node holds the registry's set), or nothing (the floor).
func usersIn(r row) string {
	switch {
	case isFloor(r):
		return "–"
	case r.N == 0:
		return fmt.Sprint(r.Pool)
	}
	return fmt.Sprintf("%s + %d", thousands(r.N), r.Pool)
}
