// Command nativeorder is the native baseline of `make loadtest`: a plain
// net/http server answering POST /orders with the work the order plugin
// does (package nativeorder).
//
// By default it stops there (no effects), the floor of what a Go service
// costs. With -data DIR it also does what the plugin's effects make meshd
// do: it starts an embedded NATS server (meshd's host/natsd), writes the
// order to a KV bucket and publishes ORDER_CREATED and a delayed
// ORDER_PAYMENT_TIMEOUT on meshd's event bus, each acknowledged. With
// -project it also consumes its ORDER_CREATED into the order plugin's read
// model (view and paged user index), one event at a time as the plugin's
// handlers run, the rest of what the order service does per order; GET
// /stats then says how many it projected so far. With -pipeline the two
// events are sent together once the order is stored, as meshd applies a
// plugin's effects, instead of one after the other.
//
//	go run ./bench/nativeorder/cmd/nativeorder -http 127.0.0.1:18091 [-data DIR [-project] [-pipeline]]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/bench/nativeorder"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/natsd"
)

func main() {
	addr := flag.String("http", "127.0.0.1:18091", "listen address")
	data := flag.String("data", "", "with a data directory: embedded NATS, KV write and event publishes per order")
	project := flag.Bool("project", false, "with -data: also project ORDER_CREATED into the read model, as the order plugin does")
	pipeline := flag.Bool("pipeline", false, "with -data: send the two events together once the order is stored, as meshd applies a plugin's effects")
	flag.Parse()
	var fx *nativeorder.Effects
	if *data != "" {
		ctx := context.Background()
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		ns, err := natsd.Start(ctx, natsd.Config{DataDir: *data, Name: "nativeorder"}, logger)
		if err != nil {
			log.Fatal(err)
		}
		defer ns.Close()
		store, err := kv.Open(ctx, ns.JetStream(), "nativeorder", kv.Options{})
		if err != nil {
			log.Fatal(err)
		}
		b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, logger)
		if err != nil {
			log.Fatal(err)
		}
		fx = &nativeorder.Effects{Store: store, Bus: b, Pipeline: *pipeline}
		if *project {
			// One event at a time, as the order plugin's projections run
			// for one user (`serial_keys` in order.toml; the load test's
			// orders all have one user): the projection reads and
			// rewrites the user's index page, and concurrent handlers
			// would lose each other's entries.
			proj := nativeorder.Projector{Store: store}
			var serial sync.Mutex
			sub, err := b.Subscribe(ctx, "nativeorder", "ORDER_CREATED", func(ctx context.Context, ev bus.Event) error {
				serial.Lock()
				defer serial.Unlock()
				err := proj.Handle(ctx, ev)
				if err == nil {
					projected.Add(1)
				}
				return err
			})
			if err != nil {
				log.Fatal(err)
			}
			defer sub.Stop()
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", nativeorder.Handler(fx))
	// The load test reads how far the read model kept up (GET /stats).
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "projected %d\n", projected.Load())
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// projected counts the ORDER_CREATED events projected into the read model.
var projected atomic.Int64
