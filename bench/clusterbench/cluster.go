package clusterbench

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"
)

// Cluster is a set of meshd nodes started together.
type Cluster struct {
	Nodes []*Node
}

// NodeSpec is one node of a cluster: its name and the demo services it
// runs.
type NodeSpec struct {
	Name     string
	Services []string
}

// StartCluster starts one node per spec under dir, from bin and the
// plugins in pluginSrc (each with a copy of the compilation cache cache,
// unless it is empty), and waits until every one serves. With cluster
// set the nodes form one loopback NATS cluster (free ports, routes to
// every node); otherwise each is a node of its own. On error every node
// started is stopped.
func StartCluster(bin, pluginSrc, cache, dir string, specs []NodeSpec, cluster bool) (*Cluster, error) {
	var routes, listens []string
	if cluster {
		ports, err := freePorts(len(specs))
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			listens = append(listens, fmt.Sprintf("127.0.0.1:%d", p))
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
	}
	c := &Cluster{}
	for i, s := range specs {
		cfg := NodeConfig{Bin: bin, Name: s.Name, Services: s.Services, PluginSrc: pluginSrc,
			Cache: cache, Dir: filepath.Join(dir, s.Name)}
		if cluster {
			cfg.ClusterListen, cfg.ClusterRoutes = listens[i], routes
		}
		n, err := StartNode(cfg)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	// The nodes wait for each other at their start: wait for them all.
	var errs []error
	for _, n := range c.Nodes {
		if err := n.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops every node at once (a cluster node stopping alone would
// wait on the others' elections) and waits for them.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(n.Stop)
	}
	wg.Wait()
}

// CPU is the user and system CPU time of every node's process so far,
// summed.
func (c *Cluster) CPU() (time.Duration, error) {
	var sum time.Duration
	for _, n := range c.Nodes {
		d, err := n.CPU()
		if err != nil {
			return 0, fmt.Errorf("node %s: %w", n.Name, err)
		}
		sum += d
	}
	return sum, nil
}

// freePorts returns n loopback ports that were free a moment ago: each
// was listened on, then closed.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
