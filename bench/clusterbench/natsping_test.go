package clusterbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/internal/syncbuf"
)

// The baseline of BenchmarkForwardGetOrder: the NATS part of a forwarded
// request alone. Two processes, each embedding a node of one NATS cluster
// and connected to it in-process, as meshd's nodes are: this one times
// request/reply round trips, a child process (this test binary again, in
// TestNATSPingResponder) answers them. Message sizes are a forwarded
// GET /orders/{id}'s: about 200 bytes out, 300 back.

const (
	pingSubject  = "meshd.bench.ping"
	envResponder = "MESHD_NATSPING_RESPONDER" // "listen route datadir" of the child's node
)

// pingNode starts this process's node of the two-node ping cluster.
func pingNode(ctx context.Context, name, listen, route, dir string) (*natsd.Server, error) {
	return natsd.Start(ctx, natsd.Config{
		DataDir: dir,
		Name:    name,
		Cluster: &natsd.Cluster{Name: "ping", Node: name, Listen: listen, Routes: []string{route}},
	}, slog.New(slog.DiscardHandler))
}

// TestNATSPingResponder is the answering process of
// BenchmarkNATSRoundTripAcrossProcesses; it runs only as that child, and
// until its standard input closes.
func TestNATSPingResponder(t *testing.T) {
	spec := os.Getenv(envResponder)
	if spec == "" {
		t.Skip("the responder of BenchmarkNATSRoundTripAcrossProcesses: run by it")
	}
	var listen, route, dir string
	if _, err := fmt.Sscan(spec, &listen, &route, &dir); err != nil {
		t.Fatalf("%s=%q: %v", envResponder, spec, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pingNode(ctx, "a", listen, route, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reply := bytes.Repeat([]byte("r"), 300)
	if _, err := s.Conn().Subscribe(pingSubject, func(m *nats.Msg) { _ = m.Respond(reply) }); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
}

// untilReached calls try until it succeeds, for 30 s at most: until a
// subscription on one node has crossed the route to the other.
func untilReached(b *testing.B, what string, try func() error) {
	b.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s within 30 s: %v", what, err)
		}
	}
}

// startChild runs this test binary again as a child running only the
// test named run, with env added to its environment and its output to
// out. The child runs until its standard input closes: stop closes it and
// waits for the child (killing it after 20 s).
func startChild(b *testing.B, run, env string, out io.Writer) (stop func()) {
	b.Helper()
	child := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.bench=^$", "-test.v")
	child.Env = append(os.Environ(), env)
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- child.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = child.Process.Kill()
			<-done
		}
	}
}

// BenchmarkNATSRoundTripAcrossProcesses: one request/reply between two
// processes through their embedded NATS nodes and the route between them,
// one at a time, as the forwarding benchmark sends them.
func BenchmarkNATSRoundTripAcrossProcesses(b *testing.B) {
	routeA, routeB, dir := routePair(b)
	var out syncbuf.Buffer
	stop := startChild(b, "TestNATSPingResponder",
		fmt.Sprintf("%s=%s nats://%s %s", envResponder, routeA, routeB, filepath.Join(dir, "a")), &out)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pingNode(ctx, "b", routeB, "nats://"+routeA, filepath.Join(dir, "b"))
	if err != nil {
		b.Fatalf("node b: %v; the responder's output:\n%s", err, out.String())
	}
	defer s.Close()
	nc := s.Conn()
	req := bytes.Repeat([]byte("q"), 200)
	untilReached(b, "no answer from the responder", func() error {
		if _, err := nc.Request(pingSubject, req, time.Second); err != nil {
			return fmt.Errorf("%w; its output:\n%s", err, out.String())
		}
		return nil
	})
	rtt := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := nc.Request(pingSubject, req, 5*time.Second); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		rtt[i] = time.Since(t0)
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(Quantile(rtt, 0.50)), "rtt-p50-µs")
	b.ReportMetric(us(Quantile(rtt, 0.99)), "rtt-p99-µs")
	b.ReportMetric(0, "ns/op")
}
