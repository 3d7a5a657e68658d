package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/jsapi"
	"github.com/meshd/meshd/host/internal/jsreplicas"
)

// ensureStream returns the stream cfg names, created, or updated to cfg; a
// stream whose settings already match cfg's is left alone. An update with
// nothing to change still rewrites the stream's metadata on disk (about a
// millisecond, where reading the stream's info is a fraction of one), and
// a start ensures several streams and one consumer per subscription.
//
// cfg.Replicas (1 when 0) is raised to the stream's own count, never
// lowered; when the stream gets more copies, ensureStream waits for them
// to catch up (a publish sent during the change can go unanswered).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	cfg.Replicas = max(cfg.Replicas, 1)
	raise := false
	if st, err := jsapi.Stream(ctx, js, cfg.Name); err == nil {
		have := st.CachedInfo().Config
		raise = have.Replicas < cfg.Replicas
		cfg.Replicas = max(cfg.Replicas, have.Replicas)
		if sameStream(have, cfg) {
			return st, nil
		}
	}
	st, err := jsapi.Do(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, cfg) })
	if err != nil || !raise {
		return st, err
	}
	return st, jsreplicas.Wait(ctx, st, cfg.Replicas)
}

// sameStream reports whether have has the settings the bus sets in want
// (the server fills in the others; an unset MaxBytes is stored as -1).
func sameStream(have, want jetstream.StreamConfig) bool {
	if want.MaxBytes == 0 {
		want.MaxBytes = -1
	}
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Storage == want.Storage && have.Retention == want.Retention &&
		have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes &&
		have.Replicas == want.Replicas
}

// MaxConsumerReplacements bounds how many replacement durables one
// subscription may take (see ensureConsumer): past that, a consumer whose
// stored state cannot be opened is an error.
const MaxConsumerReplacements = 3

// consumerNames is the durable name of a subscription followed by the
// names of its replacements: name_r1, name_r2, ...
func consumerNames(name string) []string {
	names := make([]string, 1, 1+MaxConsumerReplacements)
	names[0] = name
	for n := 1; n <= MaxConsumerReplacements; n++ {
		names = append(names, name+"_r"+strconv.Itoa(n))
	}
	return names
}

// ensuredConsumer is what ensureConsumer found or made.
type ensuredConsumer struct {
	jetstream.Consumer
	// Replaced names the durables whose stored state the server could
	// not open when this one was created in their place (empty when none
	// was replaced now).
	Replaced []string
	// Cause is why the last of Replaced could not be opened.
	Cause error
}

// ensureConsumer is ensureStream for a durable consumer of stream.
//
// A durable's position (what was acknowledged) is its stored state. When
// that state cannot be read back (a damaged file in the consumer's
// directory), the server does not restore the consumer at start, answers
// "not found" to every lookup and delete, and refuses to create it again
// ("error creating store for consumer"): the name is unusable for as long
// as the damaged directory is there. ensureConsumer then creates a
// replacement durable, cfg.Durable + "_r1" (then _r2, up to
// MaxConsumerReplacements), with cfg's settings, which starts at the
// oldest stored event: the acknowledged position was in the unreadable
// state and no other record of it exists, so every stored event of the
// subscription is delivered again (at least once is kept; handlers are
// idempotent). Later starts find the replacement first: the durable in use
// is the first of cfg.Durable and its replacements the server has.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (ensuredConsumer, error) {
	names := consumerNames(cfg.Durable)
	for _, name := range names {
		c, err := jsapi.Do(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return js.Consumer(ctx, stream, name) })
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return ensuredConsumer{}, err
		}
		cfg.Durable = name
		if sameConsumer(c.CachedInfo().Config, cfg) {
			return ensuredConsumer{Consumer: c}, nil
		}
		c, err = jsapi.CreateOrUpdateConsumer(ctx, js, stream, cfg)
		return ensuredConsumer{Consumer: c}, err
	}
	var out ensuredConsumer
	for _, name := range names {
		cfg.Durable = name
		c, err := jsapi.CreateOrUpdateConsumer(ctx, js, stream, cfg)
		if err == nil {
			out.Consumer = c
			return out, nil
		}
		if !storeFailed(err) {
			return ensuredConsumer{}, withReplaced(err, out.Replaced)
		}
		out.Replaced = append(out.Replaced, name)
		out.Cause = err
	}
	return ensuredConsumer{}, withReplaced(fmt.Errorf("%w: the server cannot open the stored state of %s nor of its %d replacements",
		out.Cause, names[0], MaxConsumerReplacements), nil)
}

// withReplaced notes in err the durables already found unusable.
func withReplaced(err error, replaced []string) error {
	if len(replaced) == 0 {
		return err
	}
	return fmt.Errorf("%w (after the stored state of %s could not be opened)", err, strings.Join(replaced, ", "))
}

// storeFailed reports whether err is the server refusing to create a
// durable because it cannot open the durable's stored state.
func storeFailed(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	const storeFailedCode = 10104 // JSConsumerStoreFailedErrF, in the clustered path
	return apiErr.ErrorCode == storeFailedCode ||
		apiErr.ErrorCode == jetstream.JSErrCodeConsumerCreate && strings.Contains(apiErr.Description, "error creating store")
}

// sameConsumer reports whether have has the settings the bus sets in want.
// The server adds metadata of its own, so want's need only be present.
func sameConsumer(have, want jetstream.ConsumerConfig) bool {
	for k, v := range want.Metadata {
		if have.Metadata[k] != v {
			return false
		}
	}
	return have.Description == want.Description && have.FilterSubject == want.FilterSubject &&
		slices.Equal(have.FilterSubjects, want.FilterSubjects) &&
		have.DeliverPolicy == want.DeliverPolicy && have.AckPolicy == want.AckPolicy &&
		have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver &&
		have.MaxAckPending == want.MaxAckPending
}
