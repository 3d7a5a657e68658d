package kv_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/meshd/meshd/host/kv"
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

	orders, err := kv.Open(ctx, ns.JetStream(), "orders", kv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = orders.Put(ctx, "order:42", []byte("paid"))
	_ = orders.Put(ctx, "order:7", []byte("new"))
	v, _ := orders.Get(ctx, "order:42")
	keys, _ := orders.Keys(ctx)
	fmt.Println(string(v), keys)

	// Another service's store never sees these keys.
	billing, _ := kv.Open(ctx, ns.JetStream(), "billing", kv.Options{})
	_, err = billing.Get(ctx, "order:42")
	fmt.Println(err)
	// Output:
	// paid [order:42 order:7]
	// kv: key not found
}
