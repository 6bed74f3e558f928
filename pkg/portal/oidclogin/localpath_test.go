package oidclogin

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzLocalPath: a return path that localPath accepts stays on this site, as Go and as a browser
// (which reads "\" as "/") resolve it.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/portal/tokens", "/portal/tokens?x=1#y", "//evil.example", "/\\evil.example",
		"https://evil.example/", "/%2F%2Fevil", "/\t/evil", "", "/", "/a/../..//evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://registry.example.org:8443/portal/oidc/callback")
	f.Fuzz(func(t *testing.T, p string) {
		if !localPath(p) {
			return
		}
		for _, s := range []string{p, strings.ReplaceAll(p, "\\", "/")} {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("localPath(%q) = true, but url.Parse(%q): %v", p, s, err)
			}
			if got := base.ResolveReference(u); got.Host != base.Host || got.Scheme != base.Scheme {
				t.Fatalf("localPath(%q) = true, but it resolves to %s", p, got)
			}
		}
	})
}
