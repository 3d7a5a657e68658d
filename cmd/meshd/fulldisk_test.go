//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
)

// freeSpaceWindow covers how long the store may go on using a free-space
// reading (host/internal/storefail.StatEvery, 50 ms), with room to spare.
const freeSpaceWindow = 200 * time.Millisecond

// TestFullDiskFailsFastAndRecovers runs a real meshd with its data
// directory on a small tmpfs, fills the tmpfs, and expects orders to be
// refused fast (503 problem+json with Retry-After, well under the 10 s
// request timeout) with a bounded log, reads to keep working, and orders
// to be taken again once space is freed, without a restart, their events
// flowing as before.
func TestFullDiskFailsFastAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd; skipped with -short")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { // after meshd is killed (cleanups run last first)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	bin := buildMeshd(t)
	_, plugins := pluginDir(t, demoPlugins("order", "payment"))
	// The compilation cache (about 14 MB) lives off the tmpfs: only the
	// JetStream store is on it.
	data := filepath.Join(mnt, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(data, "cache")); err != nil {
		t.Fatal(err)
	}
	_, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", data, "--http", "127.0.0.1:0",
		"--admin", "off", "--no-watch", "--request-timeout", "10s")
	client := &http.Client{Timeout: 30 * time.Second}
	post := func() (*http.Response, []byte, time.Duration) {
		start := time.Now()
		resp, err := client.Post(base+"/orders", "application/json",
			strings.NewReader(`{"user_id":"k","items":[{"name":"x","price":1000}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b, time.Since(start)
	}
	created := func(b []byte) string {
		var o struct{ ID string }
		if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
			t.Fatalf("created order %q: %v", b, err)
		}
		return o.ID
	}
	// statusOf returns the status the read model lists order id with.
	statusOf := func(id string) string {
		resp, err := client.Get(base + "/users/k/orders?limit=1000")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var list struct{ Orders []struct{ ID, Status string } }
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return ""
		}
		for _, o := range list.Orders {
			if o.ID == id {
				return o.Status
			}
		}
		return ""
	}
	waitPaid := func(id string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for statusOf(id) != "PAID" {
			if time.Now().After(deadline) {
				t.Fatalf("order %s is %q after 60 s, want PAID\n%s", id, statusOf(id), logTail(logs.String()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	resp, b, _ := post()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders before the disk fills: %d %s", resp.StatusCode, b)
	}
	first := created(b)
	waitPaid(first)

	fill := filepath.Join(mnt, "fill")
	testkit.FillDisk(t, fill)
	// The disk filled at once; meshd reads the free space at most every
	// 50 ms, and a write sent before its next reading meets the full disk
	// itself (docs: failure modes). The promise tested is what follows.
	time.Sleep(freeSpaceWindow)
	logsBefore := len(logs.String())
	var slowest time.Duration
	for i := range 10 {
		resp, b, took := post()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("POST /orders %d on a full disk: %d %s", i, resp.StatusCode, b)
		}
		if took > 5*time.Second { // a liveness bound against the 10 s request timeout
			t.Fatalf("POST /orders %d on a full disk took %s", i, took)
		}
		slowest = max(slowest, took)
		if ra := resp.Header.Get("Retry-After"); ra == "" {
			t.Fatalf("503 without Retry-After: %v", resp.Header)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("503 of type %q: %s", ct, b)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Reads go on.
	if s := statusOf(first); s != "PAID" {
		t.Fatalf("reading an order on a full disk: %q, want PAID", s)
	}
	grown := len(logs.String()) - logsBefore
	if grown > 4<<10 {
		t.Fatalf("%d bytes of logs in about 3 s of a full disk, want at most 4 KiB:\n%s", grown, logTail(logs.String()))
	}
	t.Logf("full disk: 10 orders refused, the slowest in %s; %d bytes logged meanwhile", slowest, grown)

	// Space returns: orders are taken again, without a restart.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	var id string
	freed := time.Now()
	deadline := freed.Add(30 * time.Second)
	for id == "" {
		resp, b, _ := post()
		switch {
		case resp.StatusCode == http.StatusCreated:
			id = created(b)
		case time.Now().After(deadline):
			t.Fatalf("POST /orders 30 s after space returned: %d %s\n%s", resp.StatusCode, b, logTail(logs.String()))
		default:
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("space freed: an order taken again after %s", time.Since(freed).Round(time.Millisecond))
	waitPaid(id)
	out := logs.String()
	for _, want := range []string{"store refuses writes", "store takes writes again"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, logTail(out))
		}
	}
}

// logTail is the end of a log, for failure messages.
func logTail(s string) string {
	const n = 6000
	if len(s) > n {
		return fmt.Sprintf("…%s", s[len(s)-n:])
	}
	return s
}
