package bus

import (
	"context"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd/natsdtest"
)

func TestClusterBusReplicas(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig
	b1, err := New(ctx, nodes[0].JetStream(), cfg, nil) // R1 first
	if err != nil {
		t.Fatal(err)
	}
	b1.Close(ctx)
	cfg.Replicas = nodes[1].Replicas(0)
	b2, err := New(ctx, nodes[1].JetStream(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close(ctx)
	cfg.Replicas = 1
	b3, err := New(ctx, nodes[2].JetStream(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close(ctx)
	for _, name := range []string{cfg.withDefaults().Stream, cfg.withDefaults().DLQStream, cfg.withDefaults().ScheduleStream} {
		st, err := nodes[2].JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s replicas %d", name, r)
		}
	}
}
