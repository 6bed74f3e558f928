package promtext

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestWriter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Metric("x_info", "gauge", "Info.")
	w.Value("x_info", `{version="`+Label("1.0 \"beta\"\n\\")+`"}`, 1)
	w.Value("x_inf", "", math.Inf(1))
	h := NewHistogram()
	h.Observe(3 * time.Millisecond)
	h.Observe(time.Hour)
	h.Write(w, "x_seconds", `op="view"`)
	n, err := w.Flush()
	got := buf.String()
	if err != nil || n != int64(len(got)) {
		t.Fatalf("Flush = %d, %v; wrote %d bytes", n, err, len(got))
	}
	for _, want := range []string{
		"# HELP x_info Info.\n# TYPE x_info gauge\n",
		`x_info{version="1.0 \"beta\"\n\\"} 1` + "\n",
		"x_inf +Inf\n",
		`x_seconds_bucket{op="view",le="0.0025"} 0` + "\n",
		`x_seconds_bucket{op="view",le="0.005"} 1` + "\n",
		`x_seconds_bucket{op="view",le="120"} 1` + "\n",
		`x_seconds_bucket{op="view",le="+Inf"} 2` + "\n",
		`x_seconds_sum{op="view"} 3600.003` + "\n",
		`x_seconds_count{op="view"} 2` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
