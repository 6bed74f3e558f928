package config

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// Cache keeps parsed configs for a long-running process (the resident verifier): Load parses a
// file again only when it changed (inode, size, modification or change time differ), and Clear
// (on SIGHUP) forgets them all. A config that fails to load is not kept.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cached
}

type cached struct {
	id       fileID
	cfg      *Config
	warnings []string
}

type fileID struct {
	ino, size    int64
	mtime, ctime time.Time
}

func statID(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{ino: int64(st.Ino), size: fi.Size(), mtime: fi.ModTime(),
		ctime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec)}, true
}

// Load is config.Load through the cache. The returned Config is shared: callers must not
// change it.
func (c *Cache) Load(path string) (*Config, []string, error) {
	id, ok := statID(path)
	c.mu.Lock()
	e, hit := c.entries[path]
	c.mu.Unlock()
	if ok && hit && e.id == id {
		return e.cfg, e.warnings, nil
	}
	cfg, warnings, err := Load(path)
	if err != nil || !ok {
		return cfg, warnings, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cached{}
	}
	c.entries[path] = cached{id: id, cfg: cfg, warnings: warnings}
	c.mu.Unlock()
	return cfg, warnings, nil
}

// Clear forgets every config.
func (c *Cache) Clear() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}
