package natsd

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestClusterClientPortLocked: nats-server routes only once it has a
// client listener, so a cluster node without Config.Listen opens one on
// loopback; nobody can log in there, with or without the route
// credentials.
func TestClusterClientPortLocked(t *testing.T) {
	var ports [2]int
	var ls [2]net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i], ls[i] = l.Addr().(*net.TCPAddr).Port, l
	}
	for _, l := range ls { // both held until both ports are read: distinct
		l.Close()
	}
	routes := []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats://127.0.0.1:%d", ports[1])}
	var servers [2]*Server
	var errs [2]error
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ready sync.WaitGroup
	for i := range servers {
		ready.Add(1)
		go func() {
			defer ready.Done()
			servers[i], errs[i] = Start(ctx, Config{DataDir: t.TempDir(), Cluster: &Cluster{
				Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, Node: fmt.Sprintf("n%d", i),
				User: "route", Password: "route password",
			}}, nil)
		}()
	}
	ready.Wait()
	for i, s := range servers {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		defer s.Close()
	}
	s := servers[0]
	if s.ClientURL() != "" {
		t.Fatalf("ClientURL = %q, want empty without Listen", s.ClientURL())
	}
	url := s.ns.ClientURL()
	if url == "" {
		t.Fatal("no client listener: routing would not have started")
	}
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo("route", "route password")}} {
		opts = append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())
		if nc, err := nats.Connect(url, opts...); err == nil {
			nc.Close()
			t.Fatalf("logged in to the cluster node's own client port %s", url)
		}
	}
}
