package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkProcessStart measures what a user waits for when meshd
// restarts: from starting the bin/meshd process to the first POST /orders
// it serves (201), with the order and payment plugins; cold with an empty
// data directory (so an empty compilation cache), warm with the data
// directory of a previous run. Each start is stopped with SIGTERM outside
// the timing.
func BenchmarkProcessStart(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "meshd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	plugins := filepath.Join(b.TempDir(), "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"order.wasm", "order.toml", "payment.wasm", "payment.toml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "build", "plugins", f))
		if err != nil {
			b.Fatalf("%v (run `make plugins`)", err)
		}
		if err := os.WriteFile(filepath.Join(plugins, f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"cold", "warm"} {
		b.Run(kind, func(b *testing.B) {
			data := b.TempDir()
			if kind == "warm" {
				startServeStop(b, bin, plugins, data) // fill the cache
			}
			for b.Loop() {
				if kind == "cold" {
					b.StopTimer()
					data = b.TempDir()
					b.StartTimer()
				}
				startServeStop(b, bin, plugins, data)
			}
		})
	}
}

// servingLine is the log line saying meshd serves, with its address.
var servingLine = regexp.MustCompile(`msg="meshd serving" http=(\S+)`)

// startServeStop starts bin on plugins and data, waits for its "meshd
// serving" line (it listens on port 0), posts one order, and stops it
// outside the timer.
func startServeStop(b *testing.B, bin, plugins, data string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--plugins", plugins, "--data", data,
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var addr string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		b.Fatal("meshd exited before serving")
	}
	go func() { // keep the pipe drained
		for sc.Scan() {
		}
	}()
	resp, err := http.Post("http://"+addr+"/orders", "application/json",
		strings.NewReader(`{"user_id":"user123","items":[{"name":"laptop","price":1500000}]}`))
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST /orders: %d", resp.StatusCode)
	}
	b.StopTimer()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	b.StartTimer()
}
