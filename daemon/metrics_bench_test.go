package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchDaemon starts a daemon serving only the order module, logging at
// info to nowhere (the debug "invoked" line is not part of the request
// path being measured).
func benchDaemon(b *testing.B, noMetrics bool) *Daemon {
	b.Helper()
	dir := b.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"order.wasm", "order.toml"} {
		copyFile(b, fixture(b, filepath.Join("..", "build", "plugins", f)), filepath.Join(plugins, f))
	}
	cfg := Default()
	cfg.PluginDir = plugins
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.CacheDir = sharedCache
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = "off"
	cfg.NoWatch = true
	cfg.NoMetrics = noMetrics
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	return d
}

// BenchmarkRequestMetrics measures what metrics cost on the request path:
// GET /orders/{id} (gateway, one pooled Wasm invocation, one KV read) in
// process, with metrics off and on. GET is the cheapest request the demo
// serves, so the share of metrics is the largest here.
func BenchmarkRequestMetrics(b *testing.B) {
	for _, c := range []struct {
		name string
		off  bool
	}{{"metrics=off", true}, {"metrics=on", false}} {
		b.Run(c.name, func(b *testing.B) {
			d := benchDaemon(b, c.off)
			h := d.Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/orders", strings.NewReader(orderBody)))
			if rec.Code != 201 {
				b.Fatalf("POST /orders: %d %s", rec.Code, rec.Body)
			}
			loc := rec.Header().Get("Location")
			if loc == "" {
				b.Fatal("no Location")
			}
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", loc, nil))
				if rec.Code != 200 {
					b.Fatalf("GET %s: %d", loc, rec.Code)
				}
			}
		})
	}
}
