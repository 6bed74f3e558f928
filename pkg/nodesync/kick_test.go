package nodesync

import (
	"testing"
	"time"
)

// TestKick: a kick ends a long back-off wait at once; while the loop is not waiting, it does
// nothing.
func TestKick(t *testing.T) {
	t.Parallel()
	f := newFakeRegistry(t) // no snapshot scripted: every attempt fails with 500
	e := newEnv(t, f)
	o := e.options()
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	s := e.start(t, o)
	f.waitEvent(t, "snapshot#1")
	deadline := time.Now().Add(5 * time.Second)
	for !s.Kick() { // the loop reaches its wait shortly after the failed attempt
		if time.Now().After(deadline) {
			t.Fatal("Kick() = false for 5 s: the loop never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.waitEvent(t, "snapshot#2") // well before the hour of back-off
}
