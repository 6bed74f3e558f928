package nodesync

// Kick ends a back-off wait of Run at once, so that the next connection is tried now (the
// D-Bus SyncNow method). It reports whether Run was waiting; when it is connected or busy
// connecting, Kick does nothing, since the loop is already as current as it can be.
func (s *Syncer) Kick() bool {
	select {
	case s.kick <- struct{}{}:
		return true
	default:
		return false
	}
}

// Revisions returns the revision applied to tokens.db and the newest revision the registry has
// announced (in a batch or bookmark). applied >= seen means caught up.
func (m *Metrics) Revisions() (applied, seen int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appliedRev, m.registryRev
}
