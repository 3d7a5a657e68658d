package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/testkit"
)

// TestSIGKILLLosesNoOrder kills a real meshd child process with SIGKILL
// while the saga's events are in flight, restarts it on the same data
// directory, and checks that every accepted order ends as the rules say,
// once.
func TestSIGKILLLosesNoOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd twice; skipped with -short")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order", "payment"))
	data := filepath.Join(dir, "data")
	client := &http.Client{Timeout: 10 * time.Second}
	var logs []*syncbuf.Buffer // of each run
	start := func() (*exec.Cmd, string) {
		cmd, base, l := startBinary(t, bin, "run", "--plugins", plugins, "--data", data, "--http", "127.0.0.1:0", "--admin", "off", "--no-watch")
		logs = append(logs, l)
		return cmd, base
	}

	cmd, base := start()
	want := map[string]string{} // order id -> final status
	for i := range 200 {
		price, status := 1000, "PAID"
		if i%4 == 0 {
			price, status = 6000000, "CANCELLED"
		}
		// The demo order service sheds POST /orders (503 with
		// Retry-After, nothing made) while its events lag 300 ms, which a
		// loaded machine can reach: PostJSON sends such a refusal again.
		code, b, err := testkit.PostJSON(context.Background(), client, base+"/orders",
			fmt.Sprintf(`{"user_id":"k","items":[{"name":"x","price":%d}]}`, price))
		if err != nil {
			t.Fatal(err)
		}
		var o struct{ ID string }
		err = json.Unmarshal(b, &o)
		if code != 201 || err != nil {
			t.Fatalf("POST: %d %v", code, err)
		}
		want[o.ID] = status
	}
	// SIGKILL right after the last accepted order: its events (and many
	// before) are still being handled.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, base = start()
	var list struct {
		Orders []struct{ ID, Status string }
	}
	done := false
	for deadline := time.Now().Add(90 * time.Second); !done && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(base + "/users/k/orders?limit=1000")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		list.Orders = nil
		if json.Unmarshal(b, &list) != nil || len(list.Orders) != len(want) {
			continue
		}
		done = true
		for _, o := range list.Orders {
			if o.Status != want[o.ID] {
				done = false
				break
			}
		}
	}
	if !done {
		settled := 0
		for _, o := range list.Orders {
			if o.Status == want[o.ID] {
				settled++
			}
		}
		var all strings.Builder
		for _, l := range logs {
			all.WriteString(l.String())
		}
		b := all.String()
		t.Fatalf("after restart %d orders listed, %d as the rules say; want all %d\n%s", len(list.Orders), settled, len(want), b[max(0, len(b)-4000):])
	}
	seen := map[string]bool{}
	for _, o := range list.Orders {
		if seen[o.ID] {
			t.Fatalf("order %s listed twice", o.ID)
		}
		seen[o.ID] = true
	}
}
