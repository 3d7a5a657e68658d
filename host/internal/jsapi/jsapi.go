// Package jsapi sends a JetStream API request (stream or consumer info,
// create, update, a key-value bucket's bind) again when it goes
// unanswered: what kv.Open, bus.New and the node directory share.
//
// In a cluster a server may drop an API request it cannot answer yet,
// without an error: a stream's info asked of a node that is placing the
// stream, or while the stream's group elects a leader. The client then
// waits for its context to end. Each attempt here gets at most Attempt;
// a request that timed out is sent again while ctx lasts. The requests
// sent this way are idempotent (reads, or a create or update to the same
// configuration), so a second copy of one that was acted on after all
// does no harm.
package jsapi

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Attempt bounds one attempt. An answered request takes milliseconds;
// one a loaded three-node cluster acts on through Raft, under a second.
const Attempt = 3 * time.Second

// Do calls f with a context that ends after Attempt (or with ctx), again
// while an attempt timed out before ctx ended, and returns the last
// result.
func Do[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, Attempt)
		v, err := f(actx)
		expired := actx.Err() != nil
		cancel()
		if err == nil || ctx.Err() != nil || !expired || !timedOut(err) {
			return v, err
		}
	}
}

// timedOut reports whether err is a request's timeout.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// Stream is js.Stream, sent again when unanswered.
func Stream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	return Do(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, name) })
}

// UpdateStream is js.UpdateStream, sent again when unanswered.
func UpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return Do(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, cfg) })
}

// CreateOrUpdateConsumer is js.CreateOrUpdateConsumer, sent again when
// unanswered.
func CreateOrUpdateConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return Do(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return js.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}

// KeyValue is js.KeyValue, sent again when unanswered.
func KeyValue(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	return Do(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, bucket) })
}

// CreateOrUpdateKeyValue is js.CreateOrUpdateKeyValue, sent again when
// unanswered.
func CreateOrUpdateKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return Do(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateOrUpdateKeyValue(ctx, cfg) })
}
