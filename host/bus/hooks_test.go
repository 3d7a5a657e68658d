package bus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestHooksAndConsumers(t *testing.T) {
	var mu sync.Mutex
	var published []string
	var attempts []int
	var failures, dead int
	cfg := testConfig
	cfg.Hooks = Hooks{
		Published: func(typ string) { mu.Lock(); published = append(published, typ); mu.Unlock() },
		Delivered: func(service, typ string, attempt int, err error, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if service != "svc" || typ != "t.bad" || d < 0 {
				t.Errorf("Delivered(%q, %q, %d, %v, %s)", service, typ, attempt, err, d)
			}
			attempts = append(attempts, attempt)
			if err != nil {
				failures++
			}
		},
		DeadLettered: func(service, typ string) { mu.Lock(); dead++; mu.Unlock() },
	}
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	sub, err := b.Subscribe(ctx, "svc", "t.bad", func(context.Context, Event) error { return errors.New("nope") })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if err := b.Publish(ctx, NewEvent("src", "t.bad", nil)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error {
		mu.Lock()
		defer mu.Unlock()
		if dead != 1 {
			return errors.New("not dead-lettered yet")
		}
		return nil
	})
	mu.Lock()
	if len(published) != 1 || published[0] != "t.bad" {
		t.Errorf("published = %v", published)
	}
	if len(attempts) != testConfig.MaxDeliver || failures != testConfig.MaxDeliver || attempts[0] != 1 || attempts[len(attempts)-1] != testConfig.MaxDeliver {
		t.Errorf("attempts = %v, failures = %d", attempts, failures)
	}
	mu.Unlock()
	cs, err := b.Consumers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Service != "svc" || cs[0].Type != "t.bad" || cs[0].Pending != 0 {
		t.Fatalf("Consumers = %+v", cs)
	}
}
