package daemon

import "testing"

// TestSyncModes: the config accepts the fsync policy by the name the docs
// give it.
func TestSyncModes(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "lazy": true, "always": true, "fsync": false} {
		c := Default()
		c.PluginDir, c.DataDir = t.TempDir(), t.TempDir()
		c.Sync = v
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("Sync %q: %v, want accepted %v", v, err, ok)
		}
	}
}
