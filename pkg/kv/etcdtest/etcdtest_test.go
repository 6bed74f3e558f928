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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.Leader(ctx)
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	if err := c.Kill(lead); err != nil {
		t.Fatal(err)
	}
	if next, err := c.Leader(ctx); err == nil && next == lead {
		t.Errorf("Leader() = m%d, the member just killed", next)
	}
	if err := c.Restart(lead); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, lead); err != nil {
		t.Fatalf("WaitHealthy after Kill and Restart: %v", err)
	}
	if err := c.Restart(lead); err == nil {
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
