package config

import (
	"strings"
	"testing"
)

// TestSyncModes: the config accepts the fsync policy by the name the docs
// give it.
func TestSyncModes(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "lazy": true, "always": true, "fsync": false} {
		c := DefaultDaemon()
		c.PluginDir, c.DataDir = t.TempDir(), t.TempDir()
		c.Sync = v
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("Sync %q: %v, want accepted %v", v, err, ok)
		}
	}
}

// TestPoolMinZeroRefused: --pool-min 0 used to become 1 silently.
func TestPoolMinZeroRefused(t *testing.T) {
	c := DefaultDaemon()
	c.PluginDir, c.DataDir = t.TempDir(), t.TempDir()
	c.Module.PoolMin = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pool-min") {
		t.Fatalf("pool-min 0: %v, want it refused", err)
	}
	c.Module.PoolMin = 1
	if err := c.Validate(); err != nil {
		t.Fatalf("pool-min 1: %v", err)
	}
}

// TestDaemonEveryProblem: Validate names every bad field, not the first.
func TestDaemonEveryProblem(t *testing.T) {
	c := DefaultDaemon()
	c.PluginDir, c.DataDir, c.HTTPAddr = "", "", ""
	c.Module.CallTimeout, c.RequestTimeout, c.KVCacheBytes = 0, -1, -1
	err := c.Validate()
	for _, field := range []string{"plugins", "data", "http", "call-timeout", "request-timeout", "kv-cache"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s not reported: %v", field, err)
		}
	}
}
