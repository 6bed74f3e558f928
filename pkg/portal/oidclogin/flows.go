package oidclogin

import (
	"context"
	"sync"
	"time"
)

// FlowLifetime is how long a started sign-in may take: Finish refuses an older flow, and a
// FlowStore may drop flows this old.
const FlowLifetime = 10 * time.Minute

// Flow is one started sign-in, kept between Start and Finish.
type Flow struct {
	// State is the random value that the provider hands back; the store's key.
	State string
	// Nonce is the random value the ID token must carry.
	Nonce string
	// Verifier is the PKCE code verifier.
	Verifier string
	// Return is the local path the browser goes to after the sign-in.
	Return string
	// Created is when Start made the flow (by Options.Now).
	Created time.Time
}

// FlowStore keeps flows between Start and Finish, server-side, so that any replica can finish a
// flow that another started. Take returns a flow once: it removes what it returns, and a second
// Take of the same state finds nothing.
type FlowStore interface {
	Put(ctx context.Context, f Flow) error
	Take(ctx context.Context, state string) (Flow, bool, error)
}

// MemoryFlows is a FlowStore in this process's memory, for a single replica and for tests. Flows
// older than FlowLifetime are dropped at each Put. The zero value is ready to use.
type MemoryFlows struct {
	// Now is the clock that ages flows; nil is time.Now.
	Now func() time.Time

	mu    sync.Mutex
	flows map[string]Flow
}

// Put keeps f under its state.
func (m *MemoryFlows) Put(_ context.Context, f Flow) error {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.flows == nil {
		m.flows = make(map[string]Flow)
	}
	for k, old := range m.flows {
		if now().Sub(old.Created) > FlowLifetime {
			delete(m.flows, k)
		}
	}
	m.flows[f.State] = f
	return nil
}

// Take returns the flow of state and forgets it.
func (m *MemoryFlows) Take(_ context.Context, state string) (Flow, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.flows[state]
	delete(m.flows, state)
	return f, ok, nil
}
