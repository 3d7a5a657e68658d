package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/natsd/natsdtest"
)

// TestSettleConcurrentBuses: three nodes of a fresh cluster making the
// same replicated streams at once all get them through Settle (without it,
// nats-server may leave one node's creation unanswered for good).
func TestSettleConcurrentBuses(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := bus.Config{Replicas: n.Replicas(0)}
			errs[i] = Settle(ctx, 80*time.Second, nil, "event bus", func(ctx context.Context) error {
				b, err := bus.New(ctx, n.JetStream(), cfg, nil)
				if err == nil {
					err = b.Close(context.Background())
				}
				return err
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i+1, err)
		}
	}
}

// TestSettleBounded: a failure that lasts is retried until the bound,
// then returned.
func TestSettleBounded(t *testing.T) {
	calls := 0
	began := time.Now()
	err := Settle(context.Background(), 2*time.Second, nil, "x", func(context.Context) error { calls++; return context.DeadlineExceeded })
	if err == nil || calls < 2 || time.Since(began) > 10*time.Second {
		t.Fatalf("err %v after %d calls in %v; want an error after 2 or more calls within the bound", err, calls, time.Since(began))
	}
	calls = 0
	if err := Settle(context.Background(), -1, nil, "x", func(context.Context) error { calls++; return context.DeadlineExceeded }); err == nil || calls != 1 {
		t.Fatalf("negative wait: err %v after %d calls, want an error after 1", err, calls)
	}
}
