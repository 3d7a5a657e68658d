package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/natsd/natsdtest"
)

// The operator's NATS user of TestExternalClusterMesh.
const (
	extUser     = "meshd"
	extPassword = "an operator's password"
)

// operatorCluster starts a 3-server NATS cluster on loopback as an
// operator would run one for meshd: JetStream clustered, a client port on
// each server taking extUser with extPassword and granting it every
// subject. It returns the servers' client URLs. Ports taken between their
// choice and the start are retried with new ones, a few times.
func operatorCluster(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	for range 3 {
		cfgs := natsdtest.Configs(t, natsdtest.FreePorts(t, 3))
		for i := range cfgs {
			cfgs[i].Listen = "127.0.0.1:0"
			cfgs[i].Auth = natsd.Auth{User: extUser, Password: extPassword, AllowPublish: []string{">"}, AllowSubscribe: []string{">"}}
		}
		var servers []*natsd.Server
		if servers, err = natsdtest.StartAll(ctx, cfgs); err == nil {
			t.Cleanup(func() {
				for _, s := range servers {
					_ = s.Close()
				}
			})
			urls := make([]string, len(servers))
			for i, s := range servers {
				urls[i] = s.ClientURL()
			}
			return urls
		}
		if msg := err.Error(); !strings.Contains(msg, "address already in use") && !strings.Contains(msg, "Error listening") {
			break
		}
	}
	t.Fatalf("start the operator's cluster: %v", err)
	return nil
}

// TestExternalClusterMesh: two real meshd processes on an operator's
// 3-server NATS cluster (--nats-url, each to a different server, with the
// operator's user and password) form one mesh. Node a runs order and
// payment, node b runs user only. b's gateway takes POST /orders
// (forwarded to a) and the order reaches PAID; user on b calls order on a;
// /v1/services of each node lists the other's services with their node;
// the streams and buckets have 3 replicas (--replicas 0 found the
// cluster's three servers). A third process taking b's name is refused
// while b lives. After SIGKILL of a, b answers POST /orders with 503
// problem+json within the directory's TTL; a restarted under its name
// serves through b again.
func TestExternalClusterMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds meshd and runs two of it; skipped with -short")
	}
	bin := buildMeshd(t)
	urls := operatorCluster(t)
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(pwFile, []byte(extPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := func(name, url, plugins, data string) *clusterNode {
		return startClusterNode(t, bin, "run", "--plugins", plugins, "--data", data,
			"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--no-watch", "--node", name,
			"--nats-url", url, "--nats-user", extUser, "--nats-password-file", pwFile)
	}
	dirA, pluginsA := pluginDir(t, demoPlugins("order", "payment"))
	dirB, pluginsB := pluginDir(t, demoPlugins("user"))
	a := node("a", urls[0], pluginsA, filepath.Join(dirA, "data"))
	b := node("b", urls[1], pluginsB, filepath.Join(dirB, "data"))
	serving := func(n *clusterNode, name string) (base, admin string) {
		t.Helper()
		select {
		case addr := <-n.addr:
			base = "http://" + addr
		case <-time.After(3 * time.Minute):
			t.Fatalf("node %s did not start serving; logs:\n%s", name, tail(n.logs.String(), 4000))
		}
		m := adminLine.FindStringSubmatch(n.logs.String()) // logged before "meshd serving"
		if m == nil {
			t.Fatalf("node %s logged no admin address; logs:\n%s", name, tail(n.logs.String(), 4000))
		}
		return base, "http://" + m[1]
	}
	baseA, adminA := serving(a, "a")
	baseB, adminB := serving(b, "b")
	_ = baseA

	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, url, body string) (int, string, []byte) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", nil
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header.Get("Content-Type"), data
	}
	logsOf := func() string {
		return fmt.Sprintf("node a logs:\n%s\nnode b logs:\n%s", quiet(a.logs.String(), 5000), quiet(b.logs.String(), 5000))
	}
	within := func(d time.Duration, what string, cond func() (bool, string)) {
		t.Helper()
		last := ""
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			ok, got := cond()
			if ok {
				return
			}
			last = got
		}
		t.Fatalf("%s: not within %v (last: %s)\n%s", what, d, last, logsOf())
	}
	order := `{"user_id":"kim","items":[{"name":"x","price":1000}]}`
	postOrder := func() string {
		t.Helper()
		id := ""
		within(60*time.Second, "b takes POST /orders (forwarded to a)", func() (bool, string) {
			code, _, body := do("POST", baseB+"/orders", order)
			var o struct{ ID string }
			if code != http.StatusCreated || json.Unmarshal(body, &o) != nil || o.ID == "" {
				return false, fmt.Sprintf("%d %s", code, tail(string(body), 300))
			}
			id = o.ID
			return true, ""
		})
		return id
	}
	paid := func(id string) {
		t.Helper()
		within(90*time.Second, "order "+id+" PAID, read through b", func() (bool, string) {
			code, _, body := do("GET", baseB+"/orders/"+id, "")
			var o struct{ Status string }
			_ = json.Unmarshal(body, &o)
			return code == http.StatusOK && o.Status == "PAID", fmt.Sprintf("%d %s", code, tail(string(body), 300))
		})
	}

	paid(postOrder())

	// user on b calls order on a: kim's profile lists the order.
	if code, _, body := do("POST", baseB+"/users", `{"id":"kim","name":"Kim"}`); code/100 != 2 {
		t.Fatalf("POST /users on b: %d %s", code, body)
	}
	within(30*time.Second, "kim's profile on b lists orders from a", func() (bool, string) {
		code, _, body := do("GET", baseB+"/users/kim", "")
		var p struct {
			Orders []json.RawMessage `json:"orders"`
		}
		return code == http.StatusOK && json.Unmarshal(body, &p) == nil && len(p.Orders) > 0, fmt.Sprintf("%d %s", code, tail(string(body), 300))
	})

	// Each node lists the other's services, with their node.
	services := func(admin string) map[string]string {
		code, _, body := do("GET", admin+"/v1/services", "")
		var list []struct{ Name, Node string }
		if code != http.StatusOK {
			return nil
		}
		if err := json.Unmarshal(body, &list); err != nil {
			var wrapped struct {
				Services []struct{ Name, Node string }
			}
			if json.Unmarshal(body, &wrapped) != nil {
				return nil
			}
			list = wrapped.Services
		}
		out := map[string]string{}
		for _, s := range list {
			out[s.Name] = s.Node
		}
		return out
	}
	within(20*time.Second, "b's /v1/services lists order and payment on a", func() (bool, string) {
		s := services(adminB)
		return s["order"] == "a" && s["payment"] == "a", fmt.Sprint(s)
	})
	within(20*time.Second, "a's /v1/services lists user on b", func() (bool, string) {
		s := services(adminA)
		return s["user"] == "b", fmt.Sprint(s)
	})

	// --replicas 0 found three servers: the directory and the event
	// stream have 3 replicas.
	if !strings.Contains(a.logs.String(), "replicas=3") {
		t.Errorf("node a did not log 3 replicas chosen; logs:\n%s", tail(a.logs.String(), 3000))
	}
	checkReplicas(t, urls[2])

	// A third process under b's name is refused while b lives.
	dirC, pluginsC := pluginDir(t, nil)
	c := node("b", urls[2], pluginsC, filepath.Join(dirC, "data"))
	exited := make(chan error, 1)
	// Wait only after stderr is read to its end: Wait closes the pipe, and
	// the refusal is the last line.
	go func() { <-c.eof; exited <- c.cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(c.logs.String(), "node name taken") {
			t.Fatalf("a second node named b: exit %v, want a failure saying the name is taken; logs:\n%s", err, tail(c.logs.String(), 3000))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("a second node named b is still running; logs:\n%s", tail(c.logs.String(), 3000))
	}

	// SIGKILL a: b answers 503 problem+json for POST /orders within the
	// directory's TTL (5 s; 10 s is the bound allowing for a loaded
	// machine).
	if err := a.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killed := time.Now()
	within(10*time.Second, "b answers 503 problem+json after a was killed", func() (bool, string) {
		code, ct, body := do("POST", baseB+"/orders", order)
		mt, _, _ := mime.ParseMediaType(ct)
		return code == http.StatusServiceUnavailable && mt == "application/problem+json", fmt.Sprintf("%d %s %s", code, ct, tail(string(body), 300))
	})
	t.Logf("503 problem+json %v after the kill", time.Since(killed).Round(time.Millisecond))
	// Past the TTL (5 s) and the watcher's grace (1 s), a's routes are
	// kept: still 503, not 404 (cluster.GoneKeep).
	for time.Since(killed) < 8*time.Second {
		code, ct, body := do("POST", baseB+"/orders", order)
		if mt, _, _ := mime.ParseMediaType(ct); code != http.StatusServiceUnavailable || mt != "application/problem+json" {
			t.Fatalf("%v after the kill: %d %s %s, want 503 problem+json", time.Since(killed).Round(time.Millisecond), code, ct, tail(string(body), 300))
		}
		time.Sleep(250 * time.Millisecond) // a pace, not a wait for a condition
	}

	// a restarted under its name (its old announcement may still be
	// there) serves through b again.
	a = node("a", urls[0], pluginsA, filepath.Join(dirA, "data"))
	serving(a, "a")
	paid(postOrder())
}

// checkReplicas connects to url as the operator's user and checks that
// meshd's directory bucket and event stream keep 3 replicas.
func checkReplicas(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(extUser, extPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lister := js.ListStreams(ctx)
	got := map[string]int{}
	for si := range lister.Info() {
		got[si.Config.Name] = si.Config.Replicas
	}
	if err := lister.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	if len(got) == 0 {
		t.Fatal("no streams")
	}
	for name, r := range got {
		if r != 3 {
			t.Errorf("stream %s has %d replicas, want 3 (all: %v)", name, r, got)
		}
	}
	if got["KV_meshd_nodes"] != 3 {
		t.Errorf("the directory's bucket: %v, want KV_meshd_nodes with 3 replicas", got)
	}
}

// TestExternalStandaloneMeshOfOne: one meshd with --nats-url to a
// standalone NATS server (no cluster) is a mesh of one: it starts (the
// directory's bucket on one replica), takes an order that reaches PAID,
// and its streams keep 1 replica.
func TestExternalStandaloneMeshOfOne(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd; skipped with -short")
	}
	bin := buildMeshd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Auth: natsd.Auth{User: extUser, Password: extPassword, AllowPublish: []string{">"}, AllowSubscribe: []string{">"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(pwFile, []byte(extPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, plugins := pluginDir(t, demoPlugins("order", "payment"))
	_, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "off", "--no-watch", "--node", "solo",
		"--nats-url", srv.ClientURL(), "--nats-user", extUser, "--nats-password-file", pwFile)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post(base+"/orders", "application/json", strings.NewReader(`{"user_id":"kim","items":[{"name":"x","price":1000}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || o.ID == "" {
		t.Fatalf("POST /orders: %d; logs:\n%s", resp.StatusCode, tail(logs.String(), 3000))
	}
	status := ""
	for deadline := time.Now().Add(60 * time.Second); status != "PAID" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(base + "/orders/" + o.ID)
		if err != nil {
			continue
		}
		var got struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		status = got.Status
	}
	if status != "PAID" {
		t.Fatalf("order %s is %q, want PAID; logs:\n%s", o.ID, status, tail(logs.String(), 3000))
	}
	if !strings.Contains(logs.String(), "nats replicas: 1 (a standalone server)") {
		t.Errorf("no log of 1 replica chosen for a standalone server; logs:\n%s", tail(logs.String(), 3000))
	}
	kv, err := srv.JetStream().KeyValue(ctx, "meshd_nodes")
	if err != nil {
		t.Fatalf("the directory's bucket: %v", err)
	}
	if _, err := kv.Get(ctx, "solo"); err != nil {
		t.Fatalf("node solo's announcement: %v", err)
	}
}
