package promtext

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Samples is one metrics page read back: each sample's value by its name and labels as written
// (`name` or `name{a="b"}`). Tests, benchmarks and scripts read the daemons' metrics with it;
// the daemons themselves never do.
type Samples map[string]float64

// Scrape reads the metrics page at url (text format, as Writer writes it) within two seconds.
func Scrape(url string) (Samples, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics at %s: %s", url, resp.Status)
	}
	return Parse(bufio.NewScanner(resp.Body))
}

// Parse reads the samples of a page line by line; comments and blank lines are skipped.
func Parse(sc *bufio.Scanner) (Samples, error) {
	s := Samples{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s[line[:i]] = v
	}
	return s, sc.Err()
}

// Get is the sample of name with exactly labels (`{a="b"}`, or "" for the unlabelled one).
func (s Samples) Get(name, labels string) (float64, bool) {
	v, ok := s[name+labels]
	return v, ok
}

// Sum is the sum of every sample of name, whatever its labels (0 when there is none).
func (s Samples) Sum(name string) float64 {
	var sum float64
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}
