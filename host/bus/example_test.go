package bus_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/natsd"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "meshd-example")
	defer os.RemoveAll(dir)

	ns, err := natsd.Start(ctx, natsd.Config{DataDir: dir}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close(ctx)

	got := make(chan bus.Event, 1)
	sub, err := b.Subscribe(ctx, "billing", "order.created", func(ctx context.Context, ev bus.Event) error {
		got <- ev
		return nil // ack
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Stop()

	if err := b.Publish(ctx, bus.NewEvent("checkout", "order.created", []byte(`{"order":42}`))); err != nil {
		log.Fatal(err)
	}
	ev := <-got
	fmt.Println(ev.Source, ev.Type, string(ev.Data), "attempt", ev.Attempt)
	// Output: checkout order.created {"order":42} attempt 1
}
