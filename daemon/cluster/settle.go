package cluster

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// DefaultSettle is how long Settle retries when the cluster gives no
// bound of its own.
const DefaultSettle = time.Minute

// settleAttempt bounds one attempt of Settle: a request a cluster leaves
// unanswered is sent again rather than waited on.
const settleAttempt = 5 * time.Second

// Settle runs f until it succeeds, for at most wait (DefaultSettle when
// 0; once, unbounded, when negative) or until ctx ends, and returns its
// last error. Each attempt has settleAttempt, and attempts are half a
// second apart, give or take a random quarter.
//
// On a cluster that has just formed, or lost a node, JetStream refuses or
// leaves unanswered the creation of a stream or bucket for a while: no peer
// to place a replica on yet, a replica group electing its leader, or two
// nodes creating one stream at once (nats-server may then never answer the
// second: a retry finds the stream made). The node retries rather than
// giving up its start, which would take its vote from the others. A
// failure that is no such thing (a bad configuration) is retried too, and
// reported when wait is over.
func Settle(ctx context.Context, wait time.Duration, log *slog.Logger, what string, f func(ctx context.Context) error) error {
	if wait < 0 {
		return f(ctx)
	}
	if wait == 0 {
		wait = DefaultSettle
	}
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, min(settleAttempt, time.Until(deadline)))
		err := f(actx)
		cancel()
		pause := 375*time.Millisecond + rand.N(250*time.Millisecond)
		if err == nil || ctx.Err() != nil || !time.Now().Add(pause).Before(deadline) {
			return err
		}
		if log != nil {
			log.Warn("cluster: not ready yet; retrying", slog.String("what", what), slog.Int("attempt", attempt), slog.String("error", bound(err.Error(), 512)))
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}
