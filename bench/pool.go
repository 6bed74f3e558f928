//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

// poolComment marks the users this driver creates; only users carrying it are ever removed.
const poolComment = "pam-totp bench"

// makePool makes sure users prefix0001..prefixNNNN exist (useradd: no home, no own group,
// nologin shell) and returns them with a cleanup that removes the ones this call created or
// found left over from an earlier run. A same-named user without the bench comment is not ours:
// makePool refuses to go on rather than use or remove it.
func makePool(ctx context.Context, prefix string, n int, logf func(string, ...any)) ([]string, func() error, error) {
	var ours []string
	cleanup := func() error {
		var errs []error
		for _, u := range ours {
			if out, err := exec.Command("userdel", u).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("userdel %s: %v: %s", u, err, strings.TrimSpace(string(out))))
			}
		}
		if len(ours) > 0 {
			logf("removed %d pool users", len(ours))
		}
		return errors.Join(errs...)
	}
	existing, err := passwdComments()
	if err != nil {
		return nil, cleanup, err
	}
	names := make([]string, n)
	created := 0
	for i := range names {
		names[i] = fmt.Sprintf("%s%04d", prefix, i+1)
		if err := ctx.Err(); err != nil {
			return nil, cleanup, err
		}
		if c, ok := existing[names[i]]; ok {
			if c != poolComment {
				return nil, cleanup, fmt.Errorf("user %s exists and is not a bench user (comment %q)", names[i], c)
			}
			ours = append(ours, names[i])
			continue
		}
		cmd := exec.Command("useradd", "-M", "-N", "-g", "users", "-s", "/usr/sbin/nologin",
			"-c", poolComment, names[i])
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, cleanup, fmt.Errorf("useradd %s: %v: %s", names[i], err, strings.TrimSpace(string(out)))
		}
		ours = append(ours, names[i])
		created++
	}
	logf("pool: %d users %s0001..%s (%d created)", n, prefix, names[n-1], created)
	return names, cleanup, nil
}

// passwdComments maps the users of /etc/passwd to their comment (GECOS) field.
func passwdComments() (map[string]string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 5 {
			m[f[0]] = f[4]
		}
	}
	return m, nil
}

// secrets makes reproducible 20-byte TOTP secrets from a seed.
type secrets struct{ r *rand.ChaCha8 }

func newSecrets(seed uint64) *secrets {
	var s [32]byte
	for i := range 4 {
		v := seed + uint64(i)*0x9e3779b97f4a7c15
		for k := range 8 {
			s[i*8+k] = byte(v >> (8 * k))
		}
	}
	return &secrets{r: rand.NewChaCha8(s)}
}

func (s *secrets) secret() []byte {
	b := make([]byte, 20)
	_, _ = s.r.Read(b)
	return b
}
