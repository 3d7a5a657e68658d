package clusterbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The native baseline of BenchmarkForwardGetOrder: the same measure (a GET
// served by the node that takes it, against one forwarded over NATS to the
// other node's process) with no meshd in it. Two processes of this test
// binary (TestNativeForwardNode), each embedding a node of one NATS
// cluster as meshd's nodes do: node a answers GET /x itself with a 300-byte
// body and answers requests on a subject with the same body; node b
// answers GET /x by a NATS request to node a (200 bytes out) and writes
// the reply. The benchmark is the client, a third process, as it is of
// meshd's nodes.

const (
	envNativeFwd = "MESHD_NATIVEFWD" // "role listen route datadir" of a TestNativeForwardNode
	fwdSubject   = "meshd.bench.fwd"
)

// TestNativeForwardNode is one node of BenchmarkNativeForwardAcrossProcesses;
// it runs only as that benchmark's child, until its standard input closes.
// It prints "http ADDRESS" once it serves.
func TestNativeForwardNode(t *testing.T) {
	spec := os.Getenv(envNativeFwd)
	if spec == "" {
		t.Skip("a node of BenchmarkNativeForwardAcrossProcesses: run by it")
	}
	var role, listen, route, dir string
	if _, err := fmt.Sscan(spec, &role, &listen, &route, &dir); err != nil {
		t.Fatalf("%s=%q: %v", envNativeFwd, spec, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pingNode(ctx, role, listen, route, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc := s.Conn()
	body := bytes.Repeat([]byte("r"), 300)
	req := bytes.Repeat([]byte("q"), 200)
	var h http.HandlerFunc
	switch role {
	case "a":
		if _, err := nc.Subscribe(fwdSubject, func(m *nats.Msg) { _ = m.Respond(body) }); err != nil {
			t.Fatal(err)
		}
		h = func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }
	case "b":
		h = func(w http.ResponseWriter, r *http.Request) {
			reply, err := nc.RequestWithContext(r.Context(), fwdSubject, req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write(reply.Data)
		}
	default:
		t.Fatalf("role %q: want a or b", role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("http %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
}

// nativeNode starts a TestNativeForwardNode child. It returns a channel
// that yields its HTTP base URL once it serves (a node's start waits for
// the other node to join), and a stop function.
func nativeNode(b *testing.B, role, listen, route, dir string) (base <-chan string, stop func()) {
	b.Helper()
	pr, pw := io.Pipe()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "http "); ok {
				addr <- "http://" + a
			}
		}
	}()
	stopChild := startChild(b, "TestNativeForwardNode", fmt.Sprintf("%s=%s %s %s %s", envNativeFwd, role, listen, route, dir), pw)
	return addr, func() {
		stopChild()
		pw.Close()
	}
}

// served waits for a node's base URL.
func served(b *testing.B, role string, base <-chan string) string {
	b.Helper()
	select {
	case a := <-base:
		return a
	case <-time.After(60 * time.Second):
		b.Fatalf("node %s did not serve within 60 s", role)
		return ""
	}
}

// BenchmarkNativeForwardAcrossProcesses: GET served locally by node a's
// HTTP server against forwarded by node b's over NATS to node a, in
// alternating order from one client, as BenchmarkForwardGetOrder measures
// meshd's nodes; forwarded − local at p50 is the overhead a forwarding
// layer of plain Go and NATS has on this machine.
func BenchmarkNativeForwardAcrossProcesses(b *testing.B) {
	routeA, routeB, dir := routePair(b)
	baseA, stopA := nativeNode(b, "a", routeA, "nats://"+routeB, filepath.Join(dir, "a"))
	defer stopA()
	baseB, stopB := nativeNode(b, "b", routeB, "nats://"+routeA, filepath.Join(dir, "b"))
	defer stopB()
	local, fwd := served(b, "a", baseA), served(b, "b", baseB)
	client := newClient()
	defer client.CloseIdleConnections()
	want := bytes.Repeat([]byte("r"), 300) // node a's body, at any path
	get := func(base string) (time.Duration, error) { return timedGet(client, base, "x", want) }
	untilReached(b, "node b does not reach node a", func() error { _, err := get(fwd); return err })
	locals, forwarded := alternate(b, 1, func() (time.Duration, error) { return get(local) },
		func() (time.Duration, error) { return get(fwd) })
	reportPairs(b, locals, forwarded)
}

// routePair returns the cluster route addresses of two nodes on loopback
// (ports free a moment ago) and a temporary directory for their data.
func routePair(b *testing.B) (routeA, routeB, dir string) {
	ports, err := freePorts(2)
	if err != nil {
		b.Fatal(err)
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	return addr(ports[0]), addr(ports[1]), b.TempDir()
}
