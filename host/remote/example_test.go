package remote_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/remote"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Two nodes on one NATS server: node b serves and announces "orders",
// node a sees it in its Directory and calls it through Remotes.
func Example() {
	dir, _ := os.MkdirTemp("", "remote-example")
	defer os.RemoveAll(dir)
	ns, _ := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true})
	ns.Start()
	defer ns.WaitForShutdown()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Node b: answer calls of "orders", announce it.
	ncB, _ := nats.Connect("", nats.InProcessServer(ns))
	defer ncB.Close()
	jsB, _ := jetstream.New(ncB)
	srv, _ := remote.NewServer(ncB, remote.ServerConfig{Node: "node-b"})
	defer srv.Close(ctx)
	srv.Serve("orders", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		resp.Status = 200
		resp.Body = append([]byte("order for "), req.Body...)
		return nil
	})
	dirB, _ := remote.StartDirectory(ctx, jsB, remote.DirectoryConfig{Node: "node-b", Local: func() []remote.Service {
		return []remote.Service{{Service: "orders", Version: "v1", Status: remote.StatusUp, Load: srv.InFlight("orders")}}
	}})
	defer dirB.Close(ctx)

	// Node a: watch, resolve, call.
	ncA, _ := nats.Connect("", nats.InProcessServer(ns))
	defer ncA.Close()
	jsA, _ := jetstream.New(ncA)
	dirA, _ := remote.StartDirectory(ctx, jsA, remote.DirectoryConfig{Node: "node-a"})
	defer dirA.Close(ctx)
	remotes := remote.NewRemotes(ncA, dirA)
	for ctx.Err() == nil && !dirA.Serving("orders") {
		time.Sleep(10 * time.Millisecond)
	}
	for _, in := range dirA.Instances() {
		fmt.Println(in.Node, in.Service, in.Version, in.Status)
	}
	var resp abi.Response
	err := remotes.Targets("orders")[0].Invoke(ctx, &abi.Request{Method: []byte("POST"), Body: []byte("ann")}, &resp)
	fmt.Println(err, resp.Status, string(resp.Body))
	// Output:
	// node-b orders v1 UP
	// <nil> 200 order for ann
}
