package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/runtime"
)

// counterService is a service whose event handler reads the counter of
// the event's key, works a little (the window in which another handler of
// the key, on another node, could read the same value), and writes the
// counter plus one, with a second write so the two go as an atomic batch.
// It stands for a guest: the module is what dispatch invokes, and this is
// invoked the same way.
type counterService struct {
	name  string
	store *kv.Store
	cfg   *config.Events
	work  time.Duration
	calls atomic.Int64
	// before, when set, runs after the handler read its counter.
	before func(call int64, key string)
}

func (c *counterService) Invoke(ctx context.Context, _ runtime.Entry, call *runtime.Call) error {
	n := c.calls.Add(1)
	var ev abi.Event
	if err := ev.Decode(call.Input); err != nil {
		return err
	}
	key, ok := topString(ev.Data, "key")
	if !ok {
		return fmt.Errorf("event without key: %s", ev.Data)
	}
	v, err := c.store.Get(ctx, "count/"+key)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	count, _ := strconv.Atoi(string(v))
	if c.before != nil {
		c.before(n, key)
	}
	time.Sleep(c.work)
	inv := call.Data.(*host.Invocation)
	inv.Writes = append(inv.Writes,
		host.KVOp{Key: "count/" + key, Value: []byte(strconv.Itoa(count + 1))},
		host.KVOp{Key: "by/" + key, Value: []byte(strconv.FormatInt(n, 10))})
	call.Code = abi.CodeOK
	return nil
}

func (c *counterService) Name() string                   { return c.name }
func (c *counterService) Logger() *slog.Logger           { return slog.New(slog.DiscardHandler) }
func (c *counterService) Events() *config.Events         { return c.cfg }
func (c *counterService) Store() *kv.Store               { return c.store }
func (c *counterService) Subscriptions() []string        { return []string{"bump"} }
func (c *counterService) ObserveKV(op string, err error) {}

// meshNode is one node of the test mesh: a dispatcher with its bus, and
// the counter service served on it.
type meshNode struct {
	svc *counterService
	bus *bus.Bus
	sub *bus.Subscription
}

// startMeshNode serves service (subscribed to typ, serial by "key") on
// js, with the mesh-wide lease on or off.
func startMeshNode(t *testing.T, js jetstream.JetStream, replicas int, service, typ string, work time.Duration, lease bool) *meshNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := kv.Open(ctx, js, service, kv.Options{Replicas: replicas})
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	b, err := bus.New(ctx, js, bus.Config{Replicas: replicas}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	svc := &counterService{name: service, store: store, work: work,
		cfg: &config.Events{Serial: true, SerialKeys: map[string]string{typ: "key"}}}
	reg := registry.New()
	reg.Serve(registry.Instance{Service: service, Version: "v1", Node: "n", Status: registry.Up, Local: svc})
	d := New(reg, WithBus(b), WithMeshSerial(lease))
	sub, err := b.Subscribe(ctx, service, typ, d.Handler(svc))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(sub.Stop)
	return &meshNode{svc: svc, bus: b, sub: sub}
}

// publishBumps publishes n events of typ, their keys taken in turn from
// keys.
func publishBumps(t *testing.T, b *bus.Bus, typ string, n int, keys []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	evs := make([]bus.Pending, n)
	for i := range evs {
		data, _ := json.Marshal(map[string]string{"key": keys[i%len(keys)]})
		evs[i] = bus.Pending{Event: bus.NewEvent("test", typ, data)}
	}
	if err := b.PublishAll(ctx, evs); err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
}

// waitSettled waits until handled reports every event handled and
// service's consumer of typ has nothing pending or unacknowledged. The
// consumer alone is not enough: its leader may not have the events just
// published yet, and then reports nothing pending.
func waitSettled(t *testing.T, js jetstream.JetStream, service, typ string, within time.Duration, handled func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := js.Consumer(ctx, bus.DefaultStream, bus.ConsumerName(service, typ))
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = c.Info(ctx); err == nil {
				if info.NumPending == 0 && info.NumAckPending == 0 && handled() {
					cancel()
					return
				}
				last = fmt.Sprintf("pending %d, ack pending %d, redelivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered)
			}
		}
		if err != nil {
			last = err.Error()
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/%s not settled within %s: %s", service, typ, within, last)
}

// TestSerialKeysMeshWide: two nodes of one NATS cluster handle 200 events
// of 4 serial keys, each handler a read, 3 ms of work and a write of the
// count plus one. With the mesh-wide lease every count ends at the number
// of its events, and nothing is dead-lettered; with each node's own locks
// alone, both nodes run handlers of one key at once and updates are lost.
func TestSerialKeysMeshWide(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node NATS cluster and 400 events; skipped with -short")
	}
	nodes := natsdtest.Cluster(t, 3)
	replicas := nodes[0].Replicas(0)
	keys := []string{"o-1", "o-2", "o-3", "o-4"}
	const events = 200
	for _, c := range []struct {
		name    string
		lease   bool
		service string
	}{
		{"lease", true, "leased"},
		{"local locks only", false, "unleased"},
	} {
		t.Run(c.name, func(t *testing.T) {
			typ := "bump_" + c.service
			n1 := startMeshNode(t, nodes[0].JetStream(), replicas, c.service, typ, 3*time.Millisecond, c.lease)
			n2 := startMeshNode(t, nodes[1].JetStream(), replicas, c.service, typ, 3*time.Millisecond, c.lease)
			start := time.Now()
			// A node whose pulls start late can find the other has taken
			// every event of a round: then another round, so that both
			// nodes run handlers of the same keys (at most three).
			published := 0
			for round := 0; round < 3; round++ {
				publishBumps(t, n1.bus, typ, events, keys)
				published += events
				waitSettled(t, nodes[2].JetStream(), c.service, typ, 3*time.Minute, func() bool {
					return n1.svc.calls.Load()+n2.svc.calls.Load() >= int64(published)
				})
				if n1.svc.calls.Load() > 0 && n2.svc.calls.Load() > 0 {
					break
				}
			}
			took := time.Since(start)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			total := 0
			for _, k := range keys {
				v, err := n1.svc.store.Get(ctx, "count/"+k)
				if err != nil {
					t.Fatalf("count of %s: %v", k, err)
				}
				n, _ := strconv.Atoi(string(v))
				total += n
			}
			dls, err := n1.bus.DeadLetters(ctx, c.service)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d events counted %d in %s; handlers run %d on node 1, %d on node 2; %d dead letters",
				c.name, published, total, took.Round(time.Millisecond), n1.svc.calls.Load(), n2.svc.calls.Load(), len(dls))
			if n1.svc.calls.Load() == 0 || n2.svc.calls.Load() == 0 {
				t.Fatalf("handlers ran %d times on node 1 and %d on node 2: want both nodes handling",
					n1.svc.calls.Load(), n2.svc.calls.Load())
			}
			switch {
			case c.lease && (total != published || len(dls) != 0):
				t.Fatalf("with the lease: counted %d of %d events, %d dead letters; want every event counted once", total, published, len(dls))
			case !c.lease && total >= published:
				t.Fatalf("without the lease: counted %d of %d events; want lost updates (the test would not see a broken lease)", total, published)
			}
		})
	}
}

// TestLeaseLostBeforeApply: a handler whose lease was taken over while it
// ran (as by another node after the lease lapsed) has its writes refused,
// none stored; the event comes back, not counted as an attempt, and is
// handled once the other holder's lease lapses.
func TestLeaseLostBeforeApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	n := startMeshNode(t, ns.JetStream(), 1, "fenced", "bump", 0, true)
	// On the first call, another holder takes the key's lease over (for
	// 1 s) after the handler read its count.
	n.svc.before = func(call int64, key string) {
		if call != 1 {
			return
		}
		m := nats.NewMsg("$KV." + kv.BucketPrefix + "fenced." + kv.LeaseKey("s", key))
		m.Header.Set("Nats-TTL", "1")
		if _, err := ns.JetStream().PublishMsg(ctx, m); err != nil {
			t.Errorf("taking the lease over: %v", err)
		}
	}
	publishBumps(t, n.bus, "bump", 1, []string{"o-1"})
	waitSettled(t, ns.JetStream(), "fenced", "bump", 30*time.Second, func() bool { return n.svc.calls.Load() >= 2 })
	if got := n.svc.calls.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (refused, then applied)", got)
	}
	v, err := n.svc.store.Get(ctx, "count/o-1")
	if err != nil || string(v) != "1" {
		t.Fatalf("count = %q, %v; want 1", v, err)
	}
	if v, err := n.svc.store.Get(ctx, "by/o-1"); err != nil || string(v) != "2" {
		t.Fatalf("by = %q, %v; want 2 (the first call's writes refused)", v, err)
	}
	if dls, err := n.bus.DeadLetters(ctx, "fenced"); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters: %v, %v", dls, err)
	}
}

// BenchmarkSerialLease is the cost of the mesh-wide lease per handled
// event: a serial handler (read a count, write it and one more key as an
// atomic batch) called directly, one key per event, with the node's locks
// alone and with the lease too, on one server (R1) and on a three-node
// cluster (R3).
func BenchmarkSerialLease(b *testing.B) {
	type backend struct {
		name     string
		js       jetstream.JetStream
		replicas int
	}
	ctx := context.Background()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ns.Close() })
	backends := []backend{{"R1", ns.JetStream(), 1}}
	if !testing.Short() {
		nodes := natsdtest.Cluster(b, 3)
		backends = append(backends, backend{"R3", nodes[0].JetStream(), nodes[0].Replicas(0)})
	}
	for _, be := range backends {
		for _, lease := range []bool{false, true} {
			name := be.name + "/local"
			service := "bench" + strings.ToLower(be.name)
			if lease {
				name = be.name + "/lease"
				service += "l"
			}
			b.Run(name, func(b *testing.B) {
				store, err := kv.Open(ctx, be.js, service, kv.Options{Replicas: be.replicas})
				if err != nil {
					b.Fatal(err)
				}
				svc := &counterService{name: service, store: store,
					cfg: &config.Events{Serial: true, SerialKeys: map[string]string{"bump": "key"}}}
				reg := registry.New()
				reg.Serve(registry.Instance{Service: service, Version: "v1", Node: "n", Status: registry.Up, Local: svc})
				h := New(reg, WithMeshSerial(lease)).Handler(svc)
				ev := bus.NewEvent("bench", "bump", nil)
				for i := 0; b.Loop(); i++ {
					ev.Data = []byte(`{"key":"k` + strconv.Itoa(i%64) + `"}`)
					hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := h(hctx, ev)
					cancel()
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
