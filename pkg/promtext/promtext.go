// Package promtext writes metrics in the Prometheus text exposition format (version 0.0.4) and
// serves them on a local listener: the one writer of totp-syncd's and totp-registry's metrics.
package promtext

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// ContentType is the Content-Type of the text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Writer writes one exposition: for each metric its HELP and TYPE lines, then its values.
type Writer struct {
	bw *bufio.Writer
	cw *countWriter
}

// NewWriter writes to w through a buffer; call Flush at the end.
func NewWriter(w io.Writer) *Writer {
	cw := &countWriter{w: w}
	return &Writer{bw: bufio.NewWriter(cw), cw: cw}
}

// Metric writes the HELP and TYPE lines of name (typ: counter, gauge or histogram).
func (w *Writer) Metric(name, typ, help string) {
	fmt.Fprintf(w.bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// Value writes one sample; labels is "" or `{k="v",...}` with values escaped by Label.
func (w *Writer) Value(name, labels string, v float64) {
	fmt.Fprintf(w.bw, "%s%s %s\n", name, labels, FormatFloat(v))
}

// Flush writes out the buffer; it returns the bytes written and the first error.
func (w *Writer) Flush() (int64, error) {
	if err := w.bw.Flush(); err != nil {
		return w.cw.n, err
	}
	return w.cw.n, w.cw.err
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// SecondsBuckets are the upper bounds, in seconds, of the duration histograms.
var SecondsBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// Histogram is a Prometheus histogram of durations over SecondsBuckets. It is not safe for
// concurrent use: its owner holds a lock.
type Histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() Histogram { return Histogram{counts: make([]uint64, len(SecondsBuckets)+1)} }

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	h.counts[sort.SearchFloat64s(SecondsBuckets, s)]++
	h.sum += s
	h.n++
}

// Write writes the buckets, sum and count of name; labels is "" or `k="v"` (without braces),
// put before the le label.
func (h *Histogram) Write(w *Writer, name, labels string) {
	pre, braced := "", ""
	if labels != "" {
		pre, braced = labels+",", "{"+labels+"}"
	}
	var cum uint64
	for i, le := range SecondsBuckets {
		cum += h.counts[i]
		w.Value(name+"_bucket", `{`+pre+`le="`+FormatFloat(le)+`"}`, float64(cum))
	}
	cum += h.counts[len(SecondsBuckets)]
	w.Value(name+"_bucket", `{`+pre+`le="+Inf"}`, float64(cum))
	w.Value(name+"_sum", braced, h.sum)
	w.Value(name+"_count", braced, float64(h.n))
}

// FormatFloat formats a sample value (+Inf, -Inf, NaN as the format spells them).
func FormatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Label escapes a label value.
func Label(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch r {
		case '\\', '"':
			out = append(out, '\\', r)
		case '\n':
			out = append(out, '\\', 'n')
		default:
			out = append(out, r)
		}
	}
	return string(out)
}

// Bool is 1 for true, 0 for false.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves GET /metrics with what write writes (through a Writer of its own).
func Handler(write func(io.Writer)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		write(w)
	})
	return mux
}

// Listen binds addr (so that a taken port fails at start, not later); key names the config key
// in the error.
func Listen(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, with short timeouts (a scrape is one small request).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
