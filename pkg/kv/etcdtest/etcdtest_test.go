package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestClusterKillRestart(t *testing.T) {
	c, err := Start(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := len(c.Endpoints()); got != 3 {
		t.Fatalf("Endpoints() has %d members, want 3", got)
	}
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx, 1); err != nil {
		t.Fatalf("WaitHealthy after Kill and Restart: %v", err)
	}
	if err := c.Restart(1); err == nil {
		t.Error("Restart of a running member succeeded")
	}
	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, 2); err != nil {
		t.Fatalf("WaitHealthy after Stop and Restart: %v", err)
	}
}
