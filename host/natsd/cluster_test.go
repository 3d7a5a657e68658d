package natsd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/meshd/meshd/internal/testkit"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestClusterReplicatedStream: three embedded nodes form one cluster; a
// stream of three replicas created through node 1 is read through node 3;
// with node 1 closed, writes through node 2 still succeed (two of three is
// a majority) and node 3 reads them.
func TestClusterReplicatedStream(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	for i, n := range nodes {
		if !n.Clustered() || n.ClusterSize() != 3 || n.Replicas(0) != 3 || n.Replicas(5) != 3 || n.Replicas(1) != 1 {
			t.Fatalf("node %d: Clustered %v, ClusterSize %d, Replicas(0) %d, Replicas(5) %d, Replicas(1) %d; want true, 3, 3, 3, 1",
				i+1, n.Clustered(), n.ClusterSize(), n.Replicas(0), n.Replicas(5), n.Replicas(1))
		}
		if !strings.HasPrefix(n.ClusterURL(), "nats://127.0.0.1:") {
			t.Fatalf("node %d: ClusterURL %q", i+1, n.ClusterURL())
		}
	}
	ctx := ctxFor(t, 60*time.Second)
	js1, js2, js3 := nodes[0].JetStream(), nodes[1].JetStream(), nodes[2].JetStream()
	if _, err := js1.CreateStream(ctx, jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage, Replicas: nodes[0].Replicas(0),
	}); err != nil {
		t.Fatalf("create R3 stream through node 1: %v", err)
	}
	// The stream's own group elects its leader after the create returns:
	// on a busy machine the first write may find none yet.
	testkit.Eventually(t, 30*time.Second, func() string {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js1.Publish(pctx, "t.a", []byte("one")); err != nil {
			return fmt.Sprintf("publish through node 1: %v", err)
		}
		return ""
	})
	st3, err := js3.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream through node 3: %v", err)
	}
	if got := st3.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("replicas = %d, want 3", got)
	}
	if m, err := st3.GetMsg(ctx, 1); err != nil || string(m.Data) != "one" {
		t.Fatalf("message 1 through node 3 = %v, %v; want one", m, err)
	}

	if err := nodes[0].Close(); err != nil {
		t.Fatalf("close node 1: %v", err)
	}
	// Node 1 may have led the stream: a write through node 2 may fail
	// until the other two elect a new leader.
	var last error
	testkit.Eventually(t, 30*time.Second, func() string {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, last = js2.Publish(pctx, "t.b", []byte("two")); last != nil {
			return fmt.Sprintf("publish through node 2 with node 1 down: %v", last)
		}
		return ""
	})
	testkit.Eventually(t, 30*time.Second, func() string {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		m, err := st3.GetLastMsgForSubject(gctx, "t.b")
		if err != nil {
			return fmt.Sprintf("read t.b through node 3: %v", err)
		}
		if string(m.Data) != "two" {
			return fmt.Sprintf("t.b through node 3 = %q, want two", m.Data)
		}
		return ""
	})
}

// TestClusterNodeRestart: a node closed and started again on its data
// directory joins the cluster at once (the others kept a majority) and
// finds the replicated stream with what was written while it was down.
func TestClusterNodeRestart(t *testing.T) {
	nodes, cfgs := natsdtest.ClusterConfigs(t, 3)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := nodes[0].JetStream().CreateStream(ctx, jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := nodes[0].JetStream().Publish(pctx, "t.a", []byte("while down")); err != nil {
			return fmt.Sprintf("publish with node 3 down: %v", err)
		}
		return ""
	})
	again, err := natsd.Start(ctx, cfgs[2], nil)
	if err != nil {
		t.Fatalf("start node 3 again: %v", err)
	}
	defer again.Close()
	if again.ClusterSize() != 3 {
		t.Fatalf("ClusterSize after restart = %d, want 3", again.ClusterSize())
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := again.JetStream().Stream(gctx, "T")
		if err != nil {
			return fmt.Sprintf("stream through node 3: %v", err)
		}
		m, err := st.GetLastMsgForSubject(gctx, "t.a")
		if err != nil || string(m.Data) != "while down" {
			return fmt.Sprintf("t.a through node 3 = %v, %v", m, err)
		}
		return ""
	})
}

// TestClusterLoneNode: a node whose routes lead nowhere never has a
// majority; Start says so within Cluster.Wait, naming the cluster, the
// node and the routes, instead of hanging.
func TestClusterLoneNode(t *testing.T) {
	ports := natsdtest.FreePorts(t, 2) // the second: nobody listens there
	cfg := natsdtest.Configs(t, ports)[0]
	cfg.Cluster.Wait = 3 * time.Second
	begin := time.Now()
	s, err := natsd.Start(ctxFor(t, 60*time.Second), cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("a lone node started")
	}
	if took := time.Since(begin); took > 30*time.Second {
		t.Fatalf("Start took %v with Wait 3s", took)
	}
	if !errors.Is(err, natsd.ErrClusterNotReady) {
		t.Fatalf("err = %v, want ErrClusterNotReady", err)
	}
	for _, want := range []string{`cluster "test"`, `node "n1"`, fmt.Sprintf("127.0.0.1:%d", ports[1]), "no JetStream meta leader"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// TestClusterLoneNodeContext: the context bounds the wait too.
func TestClusterLoneNodeContext(t *testing.T) {
	cfg := natsdtest.Configs(t, natsdtest.FreePorts(t, 2))[0]
	cfg.Cluster.Wait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := natsd.Start(ctx, cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("a lone node started")
	}
	if !errors.Is(err, natsd.ErrClusterNotReady) {
		t.Fatalf("err = %v, want ErrClusterNotReady", err)
	}
}

// TestClusterRouteAuth: nodes whose route passwords differ refuse each
// other's routes, so two nodes that would otherwise make a majority of two
// never elect a leader.
func TestClusterRouteAuth(t *testing.T) {
	cfgs := natsdtest.Configs(t, natsdtest.FreePorts(t, 2))
	cfgs[1].Cluster.Password = "another password"
	for i := range cfgs {
		cfgs[i].Cluster.Wait = 5 * time.Second
	}
	servers, err := natsdtest.StartAll(ctxFor(t, 60*time.Second), cfgs)
	if err == nil {
		for _, s := range servers {
			s.Close()
		}
		t.Fatal("nodes with different route passwords formed a cluster")
	}
	if !errors.Is(err, natsd.ErrClusterNotReady) {
		t.Fatalf("err = %v, want ErrClusterNotReady", err)
	}

	// The control: the same two with one password form a cluster.
	cfgs = natsdtest.Configs(t, natsdtest.FreePorts(t, 2))
	servers, err = natsdtest.StartAll(ctxFor(t, 60*time.Second), cfgs)
	if err != nil {
		t.Fatalf("two nodes with one password: %v", err)
	}
	for _, s := range servers {
		s.Close()
	}
}

// TestClusterLoopbackNoCredentials: a cluster on loopback alone may go
// without route credentials (Validate refusing them beyond loopback is
// TestClusterValidate's).
func TestClusterLoopbackNoCredentials(t *testing.T) {
	cfgs := natsdtest.Configs(t, natsdtest.FreePorts(t, 2))
	for i := range cfgs {
		cfgs[i].Cluster.User, cfgs[i].Cluster.Password = "", ""
	}
	servers, err := natsdtest.StartAll(ctxFor(t, 60*time.Second), cfgs)
	if err != nil {
		t.Fatalf("two loopback nodes without credentials: %v", err)
	}
	for _, s := range servers {
		if s.ClusterSize() != 2 {
			t.Errorf("ClusterSize = %d, want 2", s.ClusterSize())
		}
		s.Close()
	}

}

// TestClusterTLS: routes over TLS, each node verifying the other's
// certificate against the CA, with the route credentials on top.
func TestClusterTLS(t *testing.T) {
	cert, key, _ := testkit.SelfSigned(t, t.TempDir())
	cfgs := natsdtest.Configs(t, natsdtest.FreePorts(t, 2))
	for i := range cfgs {
		cfgs[i].Auth.TLSCert, cfgs[i].Auth.TLSKey, cfgs[i].Auth.TLSCA = cert, key, cert
	}
	servers, err := natsdtest.StartAll(ctxFor(t, 90*time.Second), cfgs)
	if err != nil {
		t.Fatalf("two nodes over TLS: %v", err)
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
	if servers[0].ClusterSize() != 2 {
		t.Fatalf("ClusterSize = %d, want 2", servers[0].ClusterSize())
	}
}

// TestStandaloneReplicas: alone, every stream has one replica; against an
// external server, what is asked.
func TestStandaloneReplicas(t *testing.T) {
	s, err := natsd.Start(ctxFor(t, 15*time.Second), natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Clustered() || s.ClusterSize() != 1 || s.Replicas(0) != 1 || s.Replicas(3) != 1 || s.ClusterURL() != "" {
		t.Fatalf("Clustered %v, ClusterSize %d, Replicas(0) %d, Replicas(3) %d, ClusterURL %q; want false, 1, 1, 1, empty",
			s.Clustered(), s.ClusterSize(), s.Replicas(0), s.Replicas(3), s.ClusterURL())
	}
}

func TestClusterValidate(t *testing.T) {
	ok := func() natsd.Config {
		return natsd.Config{DataDir: "/d", Cluster: &natsd.Cluster{
			Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6223"}, User: "u", Password: "p",
		}}
	}
	for _, tc := range []struct {
		name string
		edit func(*natsd.Config)
		want string // "" = valid
	}{
		{"loopback", func(*natsd.Config) {}, ""},
		{"no listen", func(c *natsd.Config) { c.Cluster.Listen = "" }, "cluster-listen"},
		{"no credentials on loopback", func(c *natsd.Config) { c.Cluster.User, c.Cluster.Password = "", "" }, ""},
		{"no credentials, listening beyond loopback", func(c *natsd.Config) {
			c.Cluster.User, c.Cluster.Password, c.Cluster.Listen, c.Auth.Plaintext = "", "", "10.0.0.1:6222", true
		}, "cluster-user"},
		{"no credentials, a route beyond loopback", func(c *natsd.Config) {
			c.Cluster.User, c.Cluster.Password = "", ""
			c.Cluster.Routes = []string{"nats://127.0.0.1:6223", "nats://10.0.0.2:6222"}
		}, "cluster-user"},
		{"a user without a password on loopback", func(c *natsd.Config) { c.Cluster.Password = "" }, "cluster-user"},
		{"no password", func(c *natsd.Config) { c.Cluster.Password = "" }, "cluster-user"},
		{"bcrypt", func(c *natsd.Config) { c.Cluster.Password = "$2a$11$abcdefghijklmnopqrstuv" }, "bcrypt"},
		{"beyond loopback in clear", func(c *natsd.Config) { c.Cluster.Listen = "10.0.0.1:6222" }, "not a loopback address"},
		{"every interface in clear", func(c *natsd.Config) { c.Cluster.Listen = ":6222" }, "not a loopback address"},
		{"beyond loopback, plaintext accepted", func(c *natsd.Config) { c.Cluster.Listen = "10.0.0.1:6222"; c.Auth.Plaintext = true }, ""},
		{"beyond loopback over TLS", func(c *natsd.Config) {
			c.Cluster.Listen = "10.0.0.1:6222"
			c.Auth.TLSCert, c.Auth.TLSKey, c.Auth.TLSCA = "c", "k", "ca"
		}, ""},
		{"TLS without CA", func(c *natsd.Config) {
			c.Cluster.Listen = "10.0.0.1:6222"
			c.Auth.TLSCert, c.Auth.TLSKey = "c", "k"
		}, "nats-tls-ca"},
		{"route with credentials", func(c *natsd.Config) { c.Cluster.Routes = []string{"nats://u:secret@h:1"} }, "carries credentials"},
		{"route password not repeated", func(c *natsd.Config) { c.Cluster.Routes = []string{"nats://u:secret@h:1"} }, "xxxxx"},
		{"route without port", func(c *natsd.Config) { c.Cluster.Routes = []string{"nats://h"} }, "want nats://host:port"},
		{"route of another scheme", func(c *natsd.Config) { c.Cluster.Routes = []string{"http://h:1"} }, "want nats://host:port"},
		{"name with a space", func(c *natsd.Config) { c.Cluster.Name = "a b" }, "cluster-name"},
		{"node with a newline", func(c *natsd.Config) { c.Cluster.Node = "a\nb" }, `"a\nb"`},
		{"node and name differ", func(c *natsd.Config) { c.Cluster.Node, c.Name = "a", "b" }, "node"},
		{"with an external server", func(c *natsd.Config) { c.URL = "nats://h:4222" }, "not with --nats-url"},
		{"client grants without a client port", func(c *natsd.Config) { c.Auth.AllowPublish = []string{">"} }, "nats-allow-publish"},
		{"too many routes", func(c *natsd.Config) { c.Cluster.Routes = make([]string, 65) }, "more than 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("Validate accepted it")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate: %v; want it to say %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("Validate repeats a password: %v", err)
			}
		})
	}
}
