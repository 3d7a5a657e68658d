package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSIGKILLLosesNoOrder kills a real meshd child process with SIGKILL
// while the saga's events are in flight, restarts it on the same data
// directory, and checks that every accepted order ends as the rules say,
// once.
func TestSIGKILLLosesNoOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd twice; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"order.wasm", "order.toml", "payment.wasm", "payment.toml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "build", "plugins", f))
		if err != nil {
			t.Fatalf("%v: run `make plugins` first", err)
		}
		if err := os.WriteFile(filepath.Join(plugins, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	client := &http.Client{Timeout: 10 * time.Second}

	start := func() (*exec.Cmd, string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, "run", "--plugins", plugins, "--data", data, "--http", addr, "--admin", "off", "--no-watch")
		logf, err := os.OpenFile(filepath.Join(dir, "meshd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		base := "http://" + addr
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if resp, err := client.Get(base + "/orders/none"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 404 {
					return cmd, base
				}
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "meshd.log"))
				t.Fatalf("meshd did not serve within 60s:\n%s", b)
			}
		}
	}

	cmd, base := start()
	want := map[string]string{} // order id -> final status
	for i := range 200 {
		price, status := 1000, "PAID"
		if i%4 == 0 {
			price, status = 6000000, "CANCELLED"
		}
		resp, err := client.Post(base+"/orders", "application/json",
			strings.NewReader(fmt.Sprintf(`{"user_id":"k","items":[{"name":"x","price":%d}]}`, price)))
		if err != nil {
			t.Fatal(err)
		}
		var o struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("POST: %d %v", resp.StatusCode, err)
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
		b, _ := os.ReadFile(filepath.Join(dir, "meshd.log"))
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
