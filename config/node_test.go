package config

import (
	"strings"
	"testing"
)

// TestMeshNodeName: a node joining a mesh (--nats-url) needs a name of
// letters, digits, '.', '_' and '-'; alone, the name is only a label.
func TestMeshNodeName(t *testing.T) {
	for _, tc := range []struct {
		node, url string
		ok        bool
	}{
		{"n-1.a_b", "nats://127.0.0.1:4222", true},
		{"a b", "nats://127.0.0.1:4222", false},
		{"", "nats://127.0.0.1:4222", false},
		{strings.Repeat("x", 129), "nats://127.0.0.1:4222", false},
		{"a\x1b[31mb", "nats://127.0.0.1:4222", false},
		{"a b", "", true},
	} {
		c := DefaultDaemon()
		c.PluginDir, c.DataDir = t.TempDir(), t.TempDir()
		c.Node, c.NATSURL = tc.node, tc.url
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("node %q, url %q: %v, want accepted %v", tc.node, tc.url, err, tc.ok)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), "node:") || strings.Contains(err.Error(), "\x1b")) {
			t.Errorf("node %q: %q, want a node: problem with the name escaped", tc.node, err)
		}
	}
}
