package jsapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// An attempt that goes unanswered until its own deadline is made again;
// an answer, or any other error, ends Do at once.
func TestDoSendsAgainAfterATimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*Attempt)
	defer cancel()
	calls := 0
	v, err := Do(ctx, func(actx context.Context) (int, error) {
		calls++
		if calls == 1 {
			<-actx.Done() // dropped: nobody answers
			return 0, actx.Err()
		}
		return 7, nil
	})
	if v != 7 || err != nil || calls != 2 {
		t.Fatalf("Do = %d, %v after %d calls; want 7, nil after 2", v, err, calls)
	}

	calls = 0
	refused := errors.New("refused")
	if _, err := Do(ctx, func(context.Context) (int, error) { calls++; return 0, refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("an error other than a timeout: %v after %d calls; want it after 1", err, calls)
	}

	// nats.ErrTimeout before the attempt's deadline is the server's own
	// answer, not a dropped request: not sent again.
	calls = 0
	if _, err := Do(ctx, func(context.Context) (int, error) { calls++; return 0, nats.ErrTimeout }); !errors.Is(err, nats.ErrTimeout) || calls != 1 {
		t.Fatalf("an early timeout: %v after %d calls; want it after 1", err, calls)
	}
}

// Do gives up when ctx ends, with ctx's error.
func TestDoEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Do(ctx, func(actx context.Context) (int, error) {
		<-actx.Done()
		return 0, actx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > Attempt {
		t.Fatalf("Do took %v after its context ended", d)
	}
}
