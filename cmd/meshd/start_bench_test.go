package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkProcessStart measures what a user waits for when meshd
// restarts: from starting the bin/meshd process to the first POST /orders
// it serves (201), with the order and payment plugins; cold with an empty
// data directory (so an empty compilation cache), warm with the data
// directory of a previous run. Each start is stopped with SIGTERM outside
// the timing.
func BenchmarkProcessStart(b *testing.B) {
	bin := buildMeshd(b)
	_, plugins := pluginDir(b, demoPlugins("order", "payment"))
	for _, kind := range []string{"cold", "warm"} {
		b.Run(kind, func(b *testing.B) {
			data := filepath.Join(b.TempDir(), "data")
			if kind == "warm" {
				startServeStop(b, bin, plugins, data) // fill the cache
			}
			for b.Loop() {
				if kind == "cold" {
					b.StopTimer()
					data = filepath.Join(b.TempDir(), "data")
					b.StartTimer()
				}
				startServeStop(b, bin, plugins, data)
			}
		})
	}
}

// servingLine is the log line saying meshd serves, with its address.
var servingLine = regexp.MustCompile(`msg="meshd serving" http=(\S+)`)

// startServeStop starts bin on plugins and data (startBinary: port 0, read
// from the "meshd serving" line), posts one order, and stops it outside
// the timer.
func startServeStop(b *testing.B, bin, plugins, data string) {
	cmd, base, logs := startBinary(b, bin, "run", "--plugins", plugins, "--data", data,
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	resp, err := http.Post(base+"/orders", "application/json",
		strings.NewReader(`{"user_id":"user123","items":[{"name":"laptop","price":1500000}]}`))
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST /orders: %d; logs:\n%s", resp.StatusCode, logs)
	}
	b.StopTimer()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	b.StartTimer()
}
