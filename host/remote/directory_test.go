package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// local is a changeable list of what a test node serves.
type local struct {
	mu sync.Mutex
	s  []Service
}

func (l *local) set(s ...Service) {
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

func (l *local) get() []Service {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Service(nil), l.s...)
}

func startDir(t *testing.T, n *node, cfg DirectoryConfig) *Directory {
	t.Helper()
	d, err := StartDirectory(ctxFor(t, 20*time.Second), n.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(ctxFor(t, 5*time.Second)) })
	return d
}

// describe lists a view's instances as "node/service@version status load".
func describe(in []Instance) string {
	var b []string
	for _, i := range in {
		b = append(b, fmt.Sprintf("%s/%s@%s %s %d", i.Node, i.Service, i.Version, i.Status, i.Load))
	}
	return strings.Join(b, ", ")
}

func TestDirectoryAnnouncesAndWatches(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	var bl local
	bl.set(Service{Service: "orders", Version: "v1", Status: StatusUp, Load: 3},
		Service{Service: "users", Version: "v2", Status: "STARTING"})
	da := startDir(t, a, DirectoryConfig{Node: "node-a", Local: func() []Service {
		return []Service{{Service: "payments", Version: "v9", Status: StatusUp}}
	}})
	db := startDir(t, b, DirectoryConfig{Node: "node-b", Local: bl.get})

	want := "node-b/orders@v1 UP 3, node-b/users@v2 STARTING 0"
	testkit.Eventually(t, 10*time.Second, func() string {
		if got := describe(da.Instances()); got != want {
			return "node-a sees " + got + ", want " + want
		}
		return ""
	})
	if !da.Serving("orders") || da.Serving("users") || da.Serving("payments") {
		t.Errorf("node-a: Serving orders %v users %v payments %v, want true false false (its own do not count)",
			da.Serving("orders"), da.Serving("users"), da.Serving("payments"))
	}
	testkit.Eventually(t, 10*time.Second, func() string {
		if got := describe(db.Instances()); got != "node-a/payments@v9 UP 0" {
			return "node-b sees " + got
		}
		return ""
	})

	// A change is seen at the next heartbeat, or at once on Announce.
	bl.set(Service{Service: "orders", Version: "v2", Status: StatusUp, Load: 7})
	db.Announce()
	testkit.Eventually(t, 10*time.Second, func() string {
		if got := describe(da.Instances()); got != "node-b/orders@v2 UP 7" {
			return "node-a sees " + got
		}
		return ""
	})
	for _, in := range da.Instances() {
		if time.Since(in.Seen) > 10*time.Second {
			t.Errorf("last seen %v ago", time.Since(in.Seen))
		}
	}

	// A node that closes its Directory leaves the view at once, well
	// before its TTL.
	start := time.Now()
	if err := db.Close(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 20*time.Second, "node-b gone from node-a's view", func() bool { return len(da.Instances()) == 0 })
	if took := time.Since(start); took > DefaultTTL {
		t.Errorf("a closed node left the view after %v, later than its TTL %v", took, DefaultTTL)
	}
}

func TestDirectoryDropsANodeThatStopsHeartbeating(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	const ttl = 2 * time.Second
	da := startDir(t, a, DirectoryConfig{Node: "node-a"})
	startDir(t, b, DirectoryConfig{Node: "node-b", TTL: ttl, Heartbeat: 500 * time.Millisecond, Local: func() []Service {
		return []Service{{Service: "orders", Version: "v1", Status: StatusUp}}
	}})
	testkit.Until(t, 10*time.Second, "node-b in node-a's view", func() bool { return da.Serving("orders") })

	// Node b's heartbeats keep it there past its TTL.
	stay := time.Now().Add(2 * ttl)
	for time.Now().Before(stay) {
		if !da.Serving("orders") {
			t.Fatal("node-b dropped while it still heartbeats")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Node b "crashes": its connection goes, nothing deletes its key.
	start := time.Now()
	b.nc.Close()
	testkit.Until(t, 20*time.Second, "node-b gone from node-a's view", func() bool { return !da.Serving("orders") })
	took := time.Since(start)
	t.Logf("node-b left the view %v after its last heartbeat could be sent (TTL %v)", took, ttl)
	if took > ttl+expiryGrace+2*time.Second {
		t.Errorf("node-b left the view after %v; its TTL is %v", took, ttl)
	}
	// The bucket no longer holds it either (the TTL, not only the
	// watcher's own expiry, removed it).
	kv, err := a.js.KeyValue(ctxFor(t, 5*time.Second), Bucket)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 10*time.Second, "node-b's key expired in the bucket", func() bool {
		_, err := kv.Get(ctxFor(t, 5*time.Second), nodeKey("node-b"))
		return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
	})
}

func TestDirectoryMarkerRemovesBeforeGrace(t *testing.T) {
	// The bucket's TTL, not the watcher's fallback, removes a node: with
	// the fallback pushed far away, the node still goes.
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	da := startDir(t, a, DirectoryConfig{Node: "node-a"})
	da.mu.Lock()
	da.now = func() time.Time { return time.Unix(1<<40, 0) } // "seen" far in the future: prune never drops
	da.mu.Unlock()
	startDir(t, b, DirectoryConfig{Node: "node-b", TTL: time.Second, Heartbeat: 250 * time.Millisecond, Local: func() []Service {
		return []Service{{Service: "orders", Version: "v1", Status: StatusUp}}
	}})
	testkit.Until(t, 10*time.Second, "node-b in node-a's view", func() bool { return da.Serving("orders") })
	b.nc.Close()
	testkit.Until(t, 20*time.Second, "node-b dropped by its delete marker", func() bool { return !da.Serving("orders") })
}

func TestDirectoryRefusesBadAnnouncements(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	da := startDir(t, a, DirectoryConfig{Node: "node-a"})
	put := func(key string, v any) {
		t.Helper()
		data, ok := v.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.js.Publish(ctxFor(t, 5*time.Second), "$KV."+Bucket+"."+key, data, jetstream.WithMsgTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// A node claiming another's key, garbage, and bad services.
	put(nodeKey("node-x"), Announcement{Node: "node-y", Services: []Service{{Service: "spoof", Status: StatusUp}}})
	put(nodeKey("node-z"), []byte("{not json"))
	put(nodeKey("node-w"), Announcement{Node: "node-w", Services: []Service{
		{Service: "Bad.Name", Status: StatusUp},
		{Service: "neg", Status: StatusUp, Load: -1},
		{Service: "longv", Version: strings.Repeat("v", MaxVersionBytes+1), Status: StatusUp},
		{Service: "nostatus"},
		{Service: "good", Version: "1", Status: StatusUp},
	}})
	testkit.Until(t, 10*time.Second, "node-w's good service", func() bool { return da.Serving("good") })
	if got := describe(da.Instances()); got != "node-w/good@1 UP 0" {
		t.Errorf("view %s, want only node-w/good", got)
	}
}

func TestDirectoryConfig(t *testing.T) {
	tests := []struct {
		cfg  DirectoryConfig
		want []string
	}{
		{DirectoryConfig{Node: "n"}, nil},
		{DirectoryConfig{}, []string{"Node"}},
		{DirectoryConfig{Node: "a b"}, []string{"Node"}},
		{DirectoryConfig{Node: strings.Repeat("n", MaxNodeBytes+1)}, []string{"Node"}},
		{DirectoryConfig{Node: "n", TTL: 500 * time.Millisecond}, []string{"TTL"}},
		{DirectoryConfig{Node: "n", TTL: 2 * time.Second, Heartbeat: 1500 * time.Millisecond}, []string{"TTL"}},
		{DirectoryConfig{Node: "a\n", Heartbeat: -1}, []string{"Node", "Heartbeat"}},
	}
	for _, tt := range tests {
		err := tt.cfg.withDefaults().Validate()
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("%+v: %v, want problems with %v", tt.cfg, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w+":") {
				t.Errorf("%+v: %v does not name %s", tt.cfg, err, w)
			}
		}
	}
	if got := nodeKey("a.b c/é"); got != "a=2Eb=20c=2F=C3=A9" {
		t.Errorf("nodeKey = %q", got)
	}
}

// TestRemotesResolveAndCall is the whole path: node b serves and
// announces "orders"; node a's Remotes hands out a Target only once b's
// announcement is seen, and a call through it reaches b.
func TestRemotesResolveAndCall(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	da := startDir(t, a, DirectoryConfig{Node: "node-a"})
	rem := NewRemotes(a.nc, da)
	if ts := rem.Targets("orders"); ts != nil {
		t.Fatalf("Targets before any node serves orders: %v", ts)
	}
	serve(t, b, "orders", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		resp.Status = 200
		resp.Body = append([]byte("from b: "), req.Body...)
		return nil
	}, ServerConfig{})
	startDir(t, b, DirectoryConfig{Node: "node-b", Local: func() []Service {
		return []Service{{Service: "orders", Version: "v1", Status: StatusUp}}
	}})
	testkit.Until(t, 10*time.Second, "a Target for orders", func() bool { return len(rem.Targets("orders")) == 1 })
	ts := rem.Targets("orders")
	if ts2 := rem.Targets("orders"); ts2[0] != ts[0] {
		t.Error("Targets made a new Target for the same service")
	}
	var resp abi.Response
	if err := ts[0].Invoke(ctxFor(t, 5*time.Second), &abi.Request{Body: []byte("hi")}, &resp); err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "from b: hi" {
		t.Errorf("body %q", resp.Body)
	}

	// Once b withdraws, a hands out no Target, and a Target kept from
	// before answers Unavailable.
	if err := b.nc.Drain(); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 20*time.Second, "no Target for orders", func() bool { return rem.Targets("orders") == nil })
	err := ts[0].Invoke(ctxFor(t, 5*time.Second), &abi.Request{}, &resp)
	if k := kindOfErr(t, err); k != fault.Unavailable {
		t.Errorf("call after b left: kind %v, want unavailable (%v)", k, err)
	}
}

// TestDirectoryRoutesAndOnChange: a service's routes reach the other
// nodes; OnChange is called when what another node serves changes, not
// when only its load does.
func TestDirectoryRoutesAndOnChange(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	var bl local
	orders := Service{Service: "orders", Version: "v1", Status: StatusUp,
		Routes: []Route{{Method: "POST", Path: "/orders"}, {Method: "GET", Path: "/orders/{id}"}}}
	bl.set(orders)
	var mu sync.Mutex
	changes := 0
	da := startDir(t, a, DirectoryConfig{Node: "node-a", Heartbeat: 100 * time.Millisecond, TTL: time.Second, OnChange: func() {
		mu.Lock()
		changes++
		mu.Unlock()
	}})
	db := startDir(t, b, DirectoryConfig{Node: "node-b", Heartbeat: 100 * time.Millisecond, TTL: time.Second, Local: bl.get})
	count := func() int { mu.Lock(); defer mu.Unlock(); return changes }
	testkit.Eventually(t, 10*time.Second, func() string {
		in := da.Instances()
		if len(in) != 1 || fmt.Sprint(in[0].Routes) != "[{POST /orders} {GET /orders/{id}}]" {
			return fmt.Sprintf("node-a sees %+v", in)
		}
		return ""
	})
	if count() != 1 {
		t.Fatalf("OnChange called %d times after one node came, want 1", count())
	}
	orders.Load = 7
	bl.set(orders)
	db.Announce()
	testkit.Eventually(t, 10*time.Second, func() string {
		if in := da.Instances(); len(in) != 1 || in[0].Load != 7 {
			return fmt.Sprintf("node-a sees %+v", in)
		}
		return ""
	})
	if count() != 1 {
		t.Fatalf("OnChange called %d times after a change of load alone, want 1", count())
	}
	orders.Routes = orders.Routes[:1]
	bl.set(orders)
	db.Announce()
	testkit.Eventually(t, 10*time.Second, func() string {
		if n := count(); n != 2 {
			return fmt.Sprintf("OnChange called %d times after a route went, want 2", n)
		}
		return ""
	})
	// A route that is not one is not announced.
	bl.set(Service{Service: "bad", Version: "v1", Status: StatusUp, Routes: []Route{{Method: "GET", Path: "no-slash"}}})
	db.Announce()
	testkit.Eventually(t, 10*time.Second, func() string {
		if in := da.Instances(); len(in) != 0 {
			return fmt.Sprintf("node-a sees %+v, want nothing", in)
		}
		return ""
	})
}

// TestDirectoryReplicas: on a cluster the bucket gets the copies asked
// for, and a node asking fewer does not lower them.
func TestDirectoryReplicas(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	ctx := ctxFor(t, 60*time.Second)
	replicas := func() int {
		st, err := nodes[0].JetStream().Stream(ctx, "KV_"+Bucket)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.Replicas
	}
	d1, err := StartDirectory(ctx, nodes[0].JetStream(), DirectoryConfig{Node: "n1", Replicas: 3, Local: func() []Service { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close(ctx)
	if r := replicas(); r != 3 {
		t.Fatalf("bucket has %d replicas, want 3", r)
	}
	d2, err := StartDirectory(ctx, nodes[1].JetStream(), DirectoryConfig{Node: "n2", Replicas: 1, Local: func() []Service { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close(ctx)
	if r := replicas(); r != 3 {
		t.Fatalf("bucket has %d replicas after a node asked 1, want 3", r)
	}
}

// TestDirectoryPruneWaitsForItsOwnHeartbeat: prune drops a node silent for
// its TTL only while the watch still delivers this node's own
// announcements, and counts the silence from when this node's own
// announcements began to succeed again, not from before (the bucket was
// electing a leader: nobody could announce).
func TestDirectoryPruneWaitsForItsOwnHeartbeat(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	now := t0
	d := &Directory{
		cfg:     DirectoryConfig{Node: "me", Local: func() []Service { return nil }}.withDefaults(),
		key:     nodeKey("me"),
		now:     func() time.Time { return now },
		serving: make(map[string]int),
	}
	view := func() string {
		var names []string
		for k := range d.nodes {
			names = append(names, k)
		}
		slices.Sort(names)
		return strings.Join(names, ",")
	}
	reset := func() {
		d.nodes = map[string]*nodeView{
			nodeKey("me"):    {ann: Announcement{Node: "me", TTLMs: 5000}, seen: t0},
			nodeKey("other"): {ann: Announcement{Node: "other", TTLMs: 5000}, seen: t0},
		}
	}
	silent := DefaultTTL + expiryGrace + time.Second

	// Deaf: this node's own announcement last came back with the others'.
	reset()
	d.ownSeen = t0
	now = t0.Add(silent)
	d.prune()
	if got := view(); got != nodeKey("me")+","+nodeKey("other") {
		t.Errorf("deaf watch: pruned to %q, want both kept", got)
	}

	// Hearing itself, silent since before this node's announcements came
	// back: kept for a TTL after that.
	reset()
	d.ownSeen = now
	d.healthySince = now.Add(-time.Second)
	d.prune()
	if got := view(); !strings.Contains(got, nodeKey("other")) {
		t.Errorf("just after announcing again: pruned to %q, want other kept", got)
	}

	// Hearing itself and healthy for long: the silent node goes.
	d.healthySince = t0
	d.prune()
	if got := view(); strings.Contains(got, nodeKey("other")) {
		t.Errorf("a node silent for %v while this node hears itself: still in the view %q", silent, got)
	}
}
