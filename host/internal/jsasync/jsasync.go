// Package jsasync sends a batch of JetStream publishes together and waits
// for their acknowledgements once, instead of one round trip each. It is
// what kv.Store.Apply and bus.PublishAll share.
package jsasync

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotSent is the result of a message that was not sent because an
// earlier one of its batch could not be.
var ErrNotSent = errors.New("not sent: an earlier message of the batch could not be")

// Result is what became of one message: its stream sequence once stored,
// or why not.
type Result struct {
	Seq uint64
	Err error
}

// Publish sends msgs in order (msgs[i] with opts[i], when opts is not nil)
// and waits for every acknowledgement. It returns one result per message:
// its sequence once it is stored, its error otherwise. Nothing is sent when ctx has
// ended; a message that cannot be sent stops the batch there (those after
// it get ErrNotSent); when ctx ends while waiting, the messages not yet
// acknowledged get ctx's error, though the server may still store them.
func Publish(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg, opts [][]jetstream.PublishOpt) []Result {
	res := make([]Result, len(msgs))
	if err := ctx.Err(); err != nil {
		fill(res, err)
		return res
	}
	acks := make([]jetstream.PubAckFuture, 0, len(msgs))
	for i, m := range msgs {
		var o []jetstream.PublishOpt
		if opts != nil {
			o = opts[i]
		}
		f, err := js.PublishMsgAsync(m, o...)
		if err != nil {
			res[i].Err = err
			fill(res[i+1:], ErrNotSent)
			break
		}
		acks = append(acks, f)
	}
	for i, f := range acks {
		select {
		case ack := <-f.Ok():
			res[i].Seq = ack.Sequence
		case err := <-f.Err():
			res[i].Err = err
		case <-ctx.Done():
			fill(res[i:len(acks)], ctx.Err())
			return res
		}
	}
	return res
}

func fill(res []Result, err error) {
	for i := range res {
		res[i].Err = err
	}
}
