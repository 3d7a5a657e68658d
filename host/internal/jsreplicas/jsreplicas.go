// Package jsreplicas waits for the copies of a JetStream stream to catch up
// after its replicas were raised: what kv.Open and bus.New share.
package jsreplicas

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/jsapi"
)

// MaxWait bounds how long Wait waits.
const MaxWait = 10 * time.Second

// Wait waits until the stream has a leader and its other n-1 replicas are
// caught up, at most MaxWait (then it returns nil: the copies go on
// catching up, and writes work once the leader has settled) or until ctx
// ends. Right after a change of replicas, a write may go to the stream's
// former leader and never be answered: waiting keeps that from the first
// writes.
func Wait(ctx context.Context, st jetstream.Stream, n int) error {
	deadline := time.Now().Add(MaxWait)
	for time.Now().Before(deadline) {
		info, err := jsapi.Do(ctx, func(ctx context.Context) (*jetstream.StreamInfo, error) { return st.Info(ctx) })
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) >= n-1 &&
			!slices.ContainsFunc(info.Cluster.Replicas, func(p *jetstream.PeerInfo) bool { return p == nil || !p.Current || p.Offline }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the copies of %s to catch up: %w", st.CachedInfo().Config.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
