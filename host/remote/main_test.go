package remote

import (
	"context"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/leakcheck"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain fails a passing run that leaves a goroutine behind: a Server's
// calls and a Directory's heartbeat and watcher stop at Close.
func TestMain(m *testing.M) {
	leakcheck.Main(m, nil)
}

// node is one "node" of a test: its own connection to the shared server.
type node struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// startNATS starts an embedded JetStream server with no client port and
// returns it; it shuts down when the test ends.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		JetStream:  true,
		StoreDir:   t.TempDir(),
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// connect returns a new node on ns, closed when the test ends.
func connect(t testing.TB, ns *server.Server) *node {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &node{nc: nc, js: js}
}

// ctxFor returns a context that ends within d or at the test's end.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
