package daemon

import (
	"strings"
	"testing"
)

// The daemon's Validate adds the admin listener's checks to the settings'
// (config.Daemon.Validate), reporting both.
func TestValidateAddsAdminChecks(t *testing.T) {
	c := Default()
	if c.AdminAddr != defaultAdminAddr || c.KVCacheBytes != DefaultKVCacheBytes {
		t.Fatalf("defaults: admin %q, kv cache %d", c.AdminAddr, c.KVCacheBytes)
	}
	c.PluginDir, c.DataDir = t.TempDir(), ""
	c.AdminAddr = "0.0.0.0:8081" // not loopback, no token, not public
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "data:") || !strings.Contains(err.Error(), "admin:") {
		t.Fatalf("Validate: %v, want the data and admin problems", err)
	}
	c.DataDir, c.AdminToken = t.TempDir(), "secret"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
}
