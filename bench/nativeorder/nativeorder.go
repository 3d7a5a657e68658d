// Package nativeorder is the native baseline meshd is measured against: the
// order plugin's POST /orders written as an ordinary Go net/http handler
// with encoding/json — validation, total, id, the order as JSON, 201 with a
// Location — optionally with the plugin's effects on meshd's KV and event
// bus (Effects) and its read-model projection (Projector). `make loadtest`
// serves it from cmd/nativeorder; daemon's BenchmarkCreateOrder calls
// Handler in process.
package nativeorder

import (
	"context"
	"net/http"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// Effects are the plugin's KV write and events, done natively: the order
// stored under order:<id>, ORDER_CREATED, and a delayed
// ORDER_PAYMENT_TIMEOUT, each acknowledged.
type Effects struct {
	Store *kv.Store
	Bus   *bus.Bus
	// Pipeline sends the two events together once the write is stored
	// (bus.PublishAll), as meshd applies a plugin's buffered effects;
	// without it they are published one after the other, as ordinary
	// code does.
	Pipeline bool
}

func (fx *Effects) apply(ctx context.Context, id string, data []byte) error {
	if err := fx.Store.Put(ctx, "order:"+id, data); err != nil {
		return err
	}
	created := bus.NewEvent("nativeorder", "ORDER_CREATED", data)
	timeout := bus.NewEvent("nativeorder", "ORDER_PAYMENT_TIMEOUT", []byte(`{"order_id":"`+id+`"}`))
	if fx.Pipeline {
		return fx.Bus.PublishAll(ctx, []bus.Pending{{Event: created}, {Event: timeout, Delay: 15 * time.Minute}})
	}
	if err := fx.Bus.Publish(ctx, created); err != nil {
		return err
	}
	return fx.Bus.PublishDelayed(ctx, timeout, 15*time.Minute)
}

// Handler serves POST /orders; fx may be nil (no effects).
func Handler(fx *Effects) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) { createOrder(w, r, fx) })
	return mux
}
