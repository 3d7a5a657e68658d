package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/config"
)

// keyPolicy is a configuration file asking for API key KEY on POST /orders.
func keyPolicy(key string) []byte {
	return []byte(`request_timeout = "10s"

[auth.keys]
type = "api_key"
keys = { "` + key + `" = "demo" }

[[policy]]
route = "POST /orders"
auth = "keys"
`)
}

// TestConfigFileReload changes the gateway policies of a running daemon by
// editing its configuration file (rename into place and in-place writes),
// refuses a broken file while the running policies keep serving, and takes
// a fixed one on Reload (SIGHUP).
func TestConfigFileReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, keyPolicy("k1"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) {
		c.Gateway = f.Policies()
		c.ConfigFile = path
		c.WatchQuiet = 50 * time.Millisecond
	})
	with := func(key string) int {
		return td.post(t, "/orders", map[string]string{"X-API-Key": key}).status
	}
	// until polls (bounded) for every key's status to be as wanted.
	until := func(what string, want map[string]int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok := true
			for k, code := range want {
				if with(k) != code {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				got := map[string]int{}
				for k := range want {
					got[k] = with(k)
				}
				t.Fatalf("%s: got %v, want %v", what, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	until("at start", map[string]int{"k1": 201, "": 401, "k2": 401})

	dropRename(t, path, keyPolicy("k2"))
	until("after rename into place", map[string]int{"k2": 201, "k1": 401})

	dropInPlace(t, path, keyPolicy("k3"))
	until("after an in-place write", map[string]int{"k3": 201, "k2": 401})
	before := td.ConfigStatus()
	if before.Error != "" || before.File != path {
		t.Fatalf("status %+v", before)
	}

	// A file with a problem: refused, the running policies keep serving.
	dropRename(t, path, append(keyPolicy("k4"), "\n[[policy]]\nroute = \"POST /orders\"\nauth = \"nope\"\n"...))
	deadline := time.Now().Add(15 * time.Second)
	for td.ConfigStatus().Error == "" {
		if time.Now().After(deadline) {
			t.Fatal("a broken configuration file was not reported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := td.ConfigStatus()
	if !strings.Contains(st.Error, "nope") || !st.AppliedAt.Equal(before.AppliedAt) {
		t.Fatalf("status after a broken file: %+v", st)
	}
	if with("k3") != 201 || with("k4") != 401 {
		t.Fatalf("a refused file changed the policies: k3 %d, k4 %d", with("k3"), with("k4"))
	}
	resp, err := client.Get("http://" + td.AdminAddr() + "/v1/config")
	if err != nil {
		t.Fatal(err)
	}
	var shown ConfigStatus
	err = json.NewDecoder(resp.Body).Decode(&shown)
	resp.Body.Close()
	if err != nil || shown.Error != st.Error || shown.File != path {
		t.Fatalf("GET /v1/config: %+v %v", shown, err)
	}

	// Fixed, then SIGHUP's Reload applies it at once (no waiting for the
	// watcher) and clears the error.
	if err := os.WriteFile(path, keyPolicy("k5"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := td.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if with("k5") != 201 || with("k3") != 401 || td.ConfigStatus().Error != "" {
		t.Fatalf("after Reload: k5 %d, k3 %d, status %+v", with("k5"), with("k3"), td.ConfigStatus())
	}
	if !strings.Contains(td.logs.String(), "configuration file refused") {
		t.Fatal("the refusal was not logged")
	}
}

func TestRestartOnlyKeys(t *testing.T) {
	a, err := config.Parse("a.toml", keyPolicy("k1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Parse("b.toml", append(keyPolicy("k2"), "\n[server]\nidle_timeout = \"5s\"\n"...))
	if err != nil {
		t.Fatal(err)
	}
	b.HTTP = new(string)
	*b.HTTP = ":9999"
	if got := config.RestartOnly(a, b); !slices.Equal(got, []string{"http", "server"}) {
		t.Fatalf("restart-only keys %v, want [http server] (policies reload)", got)
	}
	if got := config.RestartOnly(a, a); len(got) != 0 {
		t.Fatalf("same file: %v", got)
	}
}
