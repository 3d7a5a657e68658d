// Package natsdtest starts clusters of embedded meshd NATS servers on
// loopback for tests of the packages that store on them.
package natsdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
)

// User and Password are the route credentials of the clusters Cluster
// starts.
const (
	User     = "route"
	Password = "correct horse battery staple"
)

// startWait bounds how long each node waits for the cluster to be ready.
const startWait = 60 * time.Second

// FreePorts returns n loopback ports that were free a moment ago: each was
// listened on, then closed. Another process may take one before it is
// used; Cluster retries then.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Configs returns the configurations of an n-node cluster on the loopback
// ports given, each node with its own data directory under t's and routes
// to every node (its own included).
func Configs(t testing.TB, ports []int) []natsd.Config {
	t.Helper()
	routes := make([]string, len(ports))
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	cfgs := make([]natsd.Config, len(ports))
	for i, p := range ports {
		cfgs[i] = natsd.Config{
			DataDir: t.TempDir(),
			Cluster: &natsd.Cluster{
				Name:     "test",
				Listen:   fmt.Sprintf("127.0.0.1:%d", p),
				Routes:   routes,
				Node:     fmt.Sprintf("n%d", i+1),
				User:     User,
				Password: Password,
				Wait:     startWait,
			},
		}
	}
	return cfgs
}

// StartAll starts every node of cfgs at once (each waits for the others)
// and returns them in order, or the first error (after closing those that
// started).
func StartAll(ctx context.Context, cfgs []natsd.Config) ([]*natsd.Server, error) {
	servers := make([]*natsd.Server, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = natsd.Start(ctx, cfg, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				_ = s.Close()
			}
		}
		return nil, err
	}
	return servers, nil
}

// Cluster starts an n-node cluster on loopback and closes it when the test
// ends. A port taken between FreePorts and the start is retried with new
// ones, a few times.
func Cluster(t testing.TB, n int) []*natsd.Server {
	t.Helper()
	servers, _ := ClusterConfigs(t, n)
	return servers
}

// ClusterConfigs is Cluster, and returns the nodes' configurations too
// (to start a node again).
func ClusterConfigs(t testing.TB, n int) ([]*natsd.Server, []natsd.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startWait)
	defer cancel()
	var err error
	for range 3 {
		var servers []*natsd.Server
		cfgs := Configs(t, FreePorts(t, n))
		servers, err = StartAll(ctx, cfgs)
		if err == nil {
			t.Cleanup(func() {
				for _, s := range servers {
					_ = s.Close()
				}
			})
			return servers, cfgs
		}
		if msg := err.Error(); !strings.Contains(msg, "address already in use") && !strings.Contains(msg, "Error listening") {
			break
		}
	}
	t.Fatalf("start a %d-node cluster: %v", n, err)
	return nil, nil
}

// Server starts one embedded server, not clustered, on a temporary data
// directory and closes it when the test ends.
func Server(t testing.TB) *natsd.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatalf("natsd.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
