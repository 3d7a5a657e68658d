// Package sagabench holds what daemon's saga benchmarks need that is not
// meshd: the native saga they measure meshd against (a Target serving
// bench/nativeorder on its own embedded NATS) and the process's CPU time.
// It is benchmark-only code: nothing in the product imports it.
package sagabench

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/bench/nativeorder"
	"github.com/meshd/meshd/host/natsd"
)

// Target is a running order service a saga benchmark drives: meshd with
// the demo plugins, or the native saga.
type Target struct {
	Base string // its HTTP address
	// Projected counts the ORDER_CREATED and ORDER_PAID projections so
	// far: the read model has every order, PAID, at twice the orders (the
	// two run apart, in either order).
	Projected *atomic.Int64
	View      func(id string) []byte
	// JS is the JetStream it stores on, for counting what a run stored.
	JS jetstream.JetStream
}

// Stored is how many messages each stream on js has stored so far (its
// last sequence: a key-value write, an event, a delayed event, each one),
// by stream name.
func Stored(tb testing.TB, js jetstream.JetStream) map[string]uint64 {
	tb.Helper()
	n := map[string]uint64{}
	streams := js.ListStreams(context.Background())
	for info := range streams.Info() {
		n[info.Config.Name] = info.State.LastSeq
	}
	if err := streams.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// paymentLimit is the payment plugin's default limit, which the native
// saga declines over.
const paymentLimit = 5_000_000

// Native starts the native saga: POST /orders with its effects
// (nativeorder.Handler) on an HTTP server, and the payment and order
// handlers (nativeorder.Saga) on the bus, with the payment plugin's
// default limit, on an embedded NATS server syncing as syncMode says
// ("always" or lazy). Everything stops at the end of tb.
func Native(tb testing.TB, syncMode string) Target {
	tb.Helper()
	ctx := context.Background()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: tb.TempDir(), Name: "native", Sync: syncMode == "always"}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Close() })
	saga, err := nativeorder.OpenSaga(ctx, ns.JetStream(), paymentLimit)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { saga.Bus.Close(ctx) })
	var projected atomic.Int64
	saga.Projected = func(typ string) {
		if typ == "ORDER_PAID" || typ == "ORDER_CREATED" {
			projected.Add(1)
		}
	}
	stop, err := saga.Start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	srv := httptest.NewServer(nativeorder.Handler(&nativeorder.Effects{Store: saga.Orders, Bus: saga.Bus}))
	tb.Cleanup(srv.Close)
	return Target{Base: srv.URL, Projected: &projected, JS: ns.JetStream(), View: func(id string) []byte {
		v, err := saga.View(ctx, id)
		if err != nil {
			tb.Fatalf("view of %s: %v", id, err)
		}
		return v
	}}
}

// SyncName names a sync mode in a benchmark's name: sync=lazy for the
// default (""), sync=<mode> otherwise.
func SyncName(mode string) string {
	if mode == "" {
		return "sync=lazy"
	}
	return "sync=" + mode
}

// ProcessCPU is the user and system CPU time the process used so far.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
