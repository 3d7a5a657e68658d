// Command nativeorder is the native baseline of `make loadtest`: a plain
// net/http server answering POST /orders with the work the order plugin
// does — JSON decoding and validation of the order, the total, a new id,
// the order encoded as JSON, 201 with a Location.
//
// By default it stops there (no effects), the floor of what a Go service
// costs. With -data DIR it also does what the plugin's effects make meshd
// do: it starts an embedded NATS server (meshd's host/natsd), writes the
// order to a KV bucket and publishes ORDER_CREATED and a delayed
// ORDER_PAYMENT_TIMEOUT on meshd's event bus, each acknowledged. With
// -project it also consumes its ORDER_CREATED into the order plugin's read
// model (view and paged user index), the rest of what the order service
// does per order.
//
//	go run ./internal/nativeorder -http 127.0.0.1:18091 [-data DIR [-project]]
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/natsd"
)

func main() {
	addr := flag.String("http", "127.0.0.1:18091", "listen address")
	data := flag.String("data", "", "with a data directory: embedded NATS, KV write and event publishes per order")
	project := flag.Bool("project", false, "with -data: also project ORDER_CREATED into the read model, as the order plugin does")
	flag.Parse()
	var fx *effects
	if *data != "" {
		ctx := context.Background()
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		ns, err := natsd.Start(ctx, natsd.Config{DataDir: *data, Name: "nativeorder"}, logger)
		if err != nil {
			log.Fatal(err)
		}
		defer ns.Close()
		store, err := kv.Open(ctx, ns.JetStream(), "nativeorder")
		if err != nil {
			log.Fatal(err)
		}
		b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, logger)
		if err != nil {
			log.Fatal(err)
		}
		fx = &effects{store: store, bus: b}
		if *project {
			sub, err := b.Subscribe(ctx, "nativeorder", "ORDER_CREATED", projector{store: store}.handle)
			if err != nil {
				log.Fatal(err)
			}
			defer sub.Stop()
		}
	}
	srv := &http.Server{Addr: *addr, Handler: Handler(fx), ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// effects are the plugin's KV write and events, done natively.
type effects struct {
	store *kv.Store
	bus   *bus.Bus
}

func (fx *effects) apply(ctx context.Context, id string, data []byte) error {
	if err := fx.store.Put(ctx, "order:"+id, data); err != nil {
		return err
	}
	if err := fx.bus.Publish(ctx, bus.NewEvent("nativeorder", "ORDER_CREATED", data)); err != nil {
		return err
	}
	return fx.bus.PublishDelayed(ctx, bus.NewEvent("nativeorder", "ORDER_PAYMENT_TIMEOUT", []byte(`{"order_id":"`+id+`"}`)), 15*time.Minute)
}

// Handler serves POST /orders; fx may be nil (no effects).
func Handler(fx *effects) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) { createOrder(w, r, fx) })
	return mux
}
