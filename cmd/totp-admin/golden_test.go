package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output (go test ./cmd/totp-admin -update)")

// normalise replaces what changes from run to run: temporary paths, the fake registry's port,
// token ids, backup codes, times of today and yesterday (digits become #, so tables stay aligned)
// and durations.
func normalise(s string) string {
	now := time.Now().UTC()
	days := regexp.QuoteMeta(now.Format("2006-01-02")) + "|" + regexp.QuoteMeta(now.AddDate(0, 0, -1).Format("2006-01-02"))
	fixed := func(to string) func(string) string { return func(string) string { return to } }
	for _, r := range []struct {
		re   *regexp.Regexp
		with func(string) string
	}{
		{regexp.MustCompile(regexp.QuoteMeta(os.TempDir()) + `/[^/\s"]+/\d+`), fixed("$TMP")},
		{regexp.MustCompile(`https://127\.0\.0\.1:\d+`), fixed("https://127.0.0.1:PORT")},
		{regexp.MustCompile(`\b[0-9a-f]{8}\b`), fixed("xxxxxxxx")},
		{regexp.MustCompile(`\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b`), fixed("xxxx-xxxx-xxxx-xxxx")},
		{regexp.MustCompile(`(` + days + `)[ T]\d\d:\d\d(:\d\d(\.\d+)?)?`), func(m string) string {
			return regexp.MustCompile(`\d`).ReplaceAllString(m, "#")
		}},
		{regexp.MustCompile(`\bin \d+(\.\d+)?(µs|ms|s)\b`), fixed("in DURATION")},
	} {
		s = r.re.ReplaceAllStringFunc(s, r.with)
	}
	return s
}

// golden compares the normalised result with testdata/NAME.golden (NAME from the test's name),
// or with -update writes it.
func golden(t *testing.T, r result) {
	t.Helper()
	name := strings.NewReplacer("/", "__", " ", "_", "'", "", ",", "").Replace(t.Name())
	path := filepath.Join("testdata", name+".golden")
	got := normalise(r.String())
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/totp-admin -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./cmd/totp-admin -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestHelpGolden keeps the help of the root and of a few verbs.
func TestHelpGolden(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"token", "--help"}, {"token", "add", "--help"}, {"import", "csv", "--help"},
		{"user", "set", "--help"}, {"doctor", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			golden(t, runWith(t, nil, "", args...))
		})
	}
}
