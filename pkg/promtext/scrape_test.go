package promtext

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
)

// TestScrapeReadsWhatWriterWrites: a page written by Writer reads back sample by sample.
func TestScrapeReadsWhatWriterWrites(t *testing.T) {
	var page bytes.Buffer
	w := NewWriter(&page)
	w.Metric("x_total", "counter", "Xs.")
	w.Value("x_total", `{reason="a"}`, 2)
	w.Value("x_total", `{reason="b"}`, 3)
	w.Metric("up", "gauge", "Up.")
	w.Value("up", "", 1)
	if _, err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(func(out io.Writer) { out.Write(page.Bytes()) }))
	defer srv.Close()
	s, err := Scrape(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get("x_total", `{reason="b"}`); !ok || v != 3 {
		t.Errorf(`Get(x_total{reason="b"}) = %v, %v; want 3`, v, ok)
	}
	if v, ok := s.Get("up", ""); !ok || v != 1 {
		t.Errorf("Get(up) = %v, %v; want 1", v, ok)
	}
	if _, ok := s.Get("x_total", ""); ok {
		t.Error("Get(x_total) without labels found a sample; want none")
	}
	if got := s.Sum("x_total"); got != 5 {
		t.Errorf("Sum(x_total) = %v, want 5", got)
	}
	if got := s.Sum("x"); got != 0 {
		t.Errorf("Sum(x) = %v, want 0 (no metric of that name)", got)
	}
	if _, err := Parse(bufio.NewScanner(bytes.NewReader([]byte("novalue\n")))); err == nil {
		t.Error("Parse(a line without a value) = nil error")
	}
}
