package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUserProfileDegradesWithoutOrder runs a real meshd with order,
// payment and user, then removes order.wasm while clients keep reading
// kim's profile and writing users: the profile degrades ("orders": null,
// 200) and nothing fails; with order.wasm put back, the profile has kim's
// orders again.
func TestUserProfileDegradesWithoutOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd; skipped with -short")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order", "payment", "user"))
	_, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "off")
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, body string) (int, []byte, error) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	type profile struct {
		ID     string            `json:"id"`
		Orders []json.RawMessage `json:"orders"`
		Error  string            `json:"orders_error"`
	}
	get := func() (profile, int, error) {
		var p profile
		code, b, err := do("GET", "/users/kim", "")
		if err != nil {
			return p, 0, err
		}
		if code == 200 {
			err = json.Unmarshal(b, &p)
		}
		return p, code, err
	}
	within := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				b := logs.String()
				t.Fatalf("%s not within %v\n%s", what, d, b[max(0, len(b)-3000):])
			}
		}
	}

	if code, b, err := do("POST", "/users", `{"id":"kim","name":"Kim"}`); err != nil || code/100 != 2 {
		t.Fatalf("POST /users: %d %s %v", code, b, err)
	}
	code, b, err := do("POST", "/orders", `{"user_id":"kim","items":[{"name":"pen","price":1200}]}`)
	var o struct{ ID string }
	if err != nil || code != 201 || json.Unmarshal(b, &o) != nil {
		t.Fatalf("POST /orders: %d %s %v", code, b, err)
	}
	hasOrder := func() bool {
		p, code, err := get()
		return err == nil && code == 200 && len(p.Orders) == 1 && strings.Contains(string(p.Orders[0]), o.ID)
	}
	within(30*time.Second, "GET /users/kim listing kim's order", hasOrder)

	// Load: profiles and user writes, each answer checked.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var requests, degraded atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		mu.Lock()
		if len(failures) < 10 {
			failures = append(failures, s)
		}
		mu.Unlock()
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				requests.Add(1)
				if w == 0 {
					if code, b, err := do("POST", "/users", fmt.Sprintf(`{"id":"u%d","name":"U"}`, i)); err != nil || code/100 != 2 {
						fail(fmt.Sprintf("POST /users: %d %s %v", code, b, err))
					}
					continue
				}
				p, code, err := get()
				switch {
				case err != nil || code != 200:
					fail(fmt.Sprintf("GET /users/kim: %d %v", code, err))
				case p.ID != "kim":
					fail(fmt.Sprintf("GET /users/kim: profile of %q", p.ID))
				case p.Orders == nil:
					degraded.Add(1)
				}
			}
		}()
	}
	order := filepath.Join(plugins, "order.wasm")
	wasm, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // some load before the removal
	if err := os.Remove(order); err != nil {
		t.Fatal(err)
	}
	within(30*time.Second, "a degraded profile (orders null) after order.wasm was removed", func() bool {
		p, code, err := get()
		return err == nil && code == 200 && p.Orders == nil && p.Error != ""
	})
	if err := os.WriteFile(order, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	within(60*time.Second, "kim's order in the profile after order.wasm was put back", hasOrder)
	cancel()
	wg.Wait()
	t.Logf("%d requests under load, %d profiles degraded", requests.Load(), degraded.Load())
	if len(failures) > 0 {
		t.Fatalf("requests failed while order was removed and put back:\n%s", strings.Join(failures, "\n"))
	}
	if degraded.Load() == 0 {
		t.Error("no profile under load was degraded: the load did not see the removal")
	}
}
