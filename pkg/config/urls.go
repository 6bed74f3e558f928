package config

import (
	"fmt"
	"net/url"
	"strings"
)

// URLs is a list of registry URLs: replicas of one registry store, in the order they are
// preferred. In TOML it is a string (one URL) or an array of strings.
type URLs []string

// ParseURLs splits a comma-separated list (the form of a flag or an environment variable),
// dropping empty items and a trailing slash.
func ParseURLs(s string) URLs {
	var l URLs
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			l = append(l, u)
		}
	}
	return l
}

// UnmarshalTOML accepts "URL" or ["URL", ...].
func (l *URLs) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*l = nil
		if v = strings.TrimSuffix(strings.TrimSpace(v), "/"); v != "" {
			*l = URLs{v}
		}
		return nil
	case []any:
		out := make(URLs, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("want a URL or a list of URLs, got a list holding %T", e)
			}
			out = append(out, strings.TrimSuffix(strings.TrimSpace(s), "/"))
		}
		*l = out
		return nil
	default:
		return fmt.Errorf("want a URL or a list of URLs, got %T", v)
	}
}

// String is the list joined by ", " (for logs and messages).
func (l URLs) String() string { return strings.Join(l, ", ") }

// Validate checks that every URL is https://HOST[:PORT] (http only for tests) and none repeats.
func (l URLs) Validate() error {
	seen := make(map[string]bool, len(l))
	for _, s := range l {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
			return fmt.Errorf("%q: want https://HOST[:PORT]", s)
		}
		if seen[s] {
			return fmt.Errorf("%q is listed twice", s)
		}
		seen[s] = true
	}
	return nil
}
