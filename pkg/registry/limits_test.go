package registry

import (
	"testing"
	"time"
)

// TestStreamOutlivesWriteTimeout: a node's watch stream lasts longer than write_timeout and
// read_timeout, which cut an ordinary request.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.ReadHeaderTimeout = time.Second, time.Second, time.Second
	}})
	cred := e.addNode("n1", "a")
	n := e.follow(cred)
	start := time.Now()
	for time.Since(start) < 3500*time.Millisecond {
		n.next() // fails the test when the stream ends
	}
	e.addUser("late", "a")
	e.addToken("late")
	if b := n.nextBatch(); b.Rev != e.srv.store.Rev() {
		t.Errorf("batch after 3.5 s at revision %d, want %d", b.Rev, e.srv.store.Rev())
	}
}
