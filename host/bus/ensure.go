package bus

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// ensureStream returns the stream cfg names, created, or updated to cfg; a
// stream whose settings already match cfg's is left alone. An update with
// nothing to change still rewrites the stream's metadata on disk (about a
// millisecond, where reading the stream's info is a fraction of one), and
// a start ensures several streams and one consumer per subscription.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if st, err := js.Stream(ctx, cfg.Name); err == nil && sameStream(st.CachedInfo().Config, cfg) {
		return st, nil
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// sameStream reports whether have has the settings the bus sets in want
// (the server fills in the others; an unset MaxBytes is stored as -1).
func sameStream(have, want jetstream.StreamConfig) bool {
	if want.MaxBytes == 0 {
		want.MaxBytes = -1
	}
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Storage == want.Storage && have.Retention == want.Retention &&
		have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes
}

// ensureConsumer is ensureStream for a durable consumer of stream.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if c, err := js.Consumer(ctx, stream, cfg.Durable); err == nil && sameConsumer(c.CachedInfo().Config, cfg) {
		return c, nil
	}
	return js.CreateOrUpdateConsumer(ctx, stream, cfg)
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
