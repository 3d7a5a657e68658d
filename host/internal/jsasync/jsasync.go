// Package jsasync sends a batch of JetStream publishes together and waits
// for their acknowledgements once, instead of one round trip each (Publish,
// what kv.Store.Apply and bus.PublishAll share), or as one atomic batch
// that the server stores whole or not at all (PublishAtomic, what
// kv.Store.Apply uses for several writes).
package jsasync

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotSent is the result of a message that was not sent because an
// earlier one of its batch could not be.
var ErrNotSent = errors.New("not sent: an earlier message of the batch could not be")

// While a stream is placed on a server or elects a new leader (after a
// node's loss, up to 5 s with meshd's embedded nodes, 9 s with stock
// nats-server's timeouts), no server listens on its subjects and a publish
// finds no responders: it reached no one, so sending it again is safe.
// Writes wait so, every RetryWait, RetryAttempts times (10 s) at most,
// within their context, before they report ErrNoStreamResponse: a write
// sent into an election is stored once it ends, as events are (bus
// PublishAll), instead of failing its request.
const (
	RetryWait     = 100 * time.Millisecond
	RetryAttempts = 100
)

// RetryOpts are the publish options that wait for a stream so. The slice
// is shared, made once (it is on every write's path): an append to it
// copies it, as its capacity is its length; never set its elements.
func RetryOpts() []jetstream.PublishOpt { return retryOpts }

var retryOpts = slices.Clip([]jetstream.PublishOpt{jetstream.WithRetryWait(RetryWait), jetstream.WithRetryAttempts(RetryAttempts)})

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

// Atomic batch publish (nats-server 2.12 and later, on a stream with
// AllowAtomicPublish): messages carrying one Nats-Batch-Id, numbered from 1
// by Nats-Batch-Sequence, are staged by the server and stored together when
// the last one, marked Nats-Batch-Commit: 1, arrives and every message
// passes the stream's checks; otherwise none is stored. The server holds the
// stream's isolation lock (one multi-message proposal when clustered) across
// the commit, so the messages get consecutive sequences, and the commit's
// acknowledgement carries the last one and the count.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// ErrNotCommitted wraps the error of an atomic batch that was never
// committed (a message before the commit could not be sent): the server
// stores none of it and drops what it staged after its batch timeout.
var ErrNotCommitted = errors.New("atomic batch not committed, none of it is stored")

// errCodeIncompleteBatch is the server's error code for a commit whose
// batch misses messages before it (JSAtomicPublishIncompleteBatchErr): it
// stored none of the batch.
const errCodeIncompleteBatch jetstream.ErrorCode = 10176

// ErrInvalidBatchAck is the error of a commit answered with something that
// is neither an acknowledgement of the whole batch nor an error.
var ErrInvalidBatchAck = errors.New("invalid atomic batch acknowledgement")

// testHookBeforeCommit, when set by a test, runs between a batch's first
// messages and its commit.
var testHookBeforeCommit func()

// sendBatch sends msgs as one atomic batch under a new id and returns the
// id and the answer to its commit.
func sendBatch(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (string, *nats.Msg, error) {
	id := rand.Text() // 26 characters; the server takes up to 64
	last := len(msgs) - 1
	for i, m := range msgs {
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i < last {
			// No reply subject: the server answers only the commit, which
			// fails as incomplete if any message before it was refused.
			if err := nc.PublishMsg(m); err != nil {
				return id, nil, fmt.Errorf("%w: message %d of %d: %w", ErrNotCommitted, i+1, len(msgs), err)
			}
		}
	}
	if testHookBeforeCommit != nil {
		testHookBeforeCommit()
	}
	commit := msgs[last]
	commit.Header.Set(hdrBatchCommit, "1")
	resp, err := nc.RequestMsgWithContext(ctx, commit)
	if err != nil {
		return id, nil, fmt.Errorf("atomic batch of %d: commit: %w", len(msgs), err)
	}
	return id, resp, nil
}

// batchAck is the answer to a batch's commit: an acknowledgement or an
// error.
type batchAck struct {
	Error  *jetstream.APIError `json:"error,omitempty"`
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Batch  string              `json:"batch"`
	Count  uint64              `json:"count"`
}

// PublishAtomic sends msgs, at least one, as one atomic batch to the stream
// their subjects belong to and waits for the commit's acknowledgement. On
// success the server stored every message, msgs[i] at sequence
// first+i. It sets the batch headers on msgs (which must not carry a reply
// subject) and takes no more messages than the server's batch size limit
// allows (the caller checks). Nothing is sent when ctx has ended. An error
// wrapping ErrNotCommitted means none was stored; after any other error the
// outcome is unknown unless the server said why it refused the batch (an
// error wrapping *jetstream.APIError). Without a deadline on ctx it waits
// for the commit at most the JetStream context's default timeout.
func PublishAtomic(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) (first uint64, err error) {
	if len(msgs) == 0 {
		return 0, errors.New("jsasync: empty atomic batch")
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotCommitted, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	var ack batchAck
	var id string
	var resp *nats.Msg
	resent := false
	for try := 0; ; try++ {
		id, resp, err = sendBatch(ctx, js.Conn(), msgs)
		if err == nil {
			ack = batchAck{}
			if err := json.Unmarshal(resp.Data, &ack); err != nil {
				return 0, fmt.Errorf("atomic batch of %d: %w: %w", len(msgs), ErrInvalidBatchAck, err)
			}
			if ack.Error != nil && ack.Error.ErrorCode == errCodeIncompleteBatch && !resent {
				// The commit reached a stream that had not got the
				// messages before it: the stream began to listen (was
				// created, or a new leader took over) while they were on
				// their way, or it refused one of them (a failed
				// condition, a message too large). It stored none of the
				// batch. Send it once more, at once, under a new id: the
				// first case is then stored, the second refused again.
				resent = true
				continue
			}
			if ack.Error != nil {
				return 0, fmt.Errorf("atomic batch of %d refused: %w", len(msgs), ack.Error)
			}
			break
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return 0, err
		}
		// The commit reached no one, so no stream stored the batch (one
		// that got its first messages drops it, uncommitted): send it
		// again, under a new id, once the stream listens.
		// A try is made only with RetryWait left after its wait, so that
		// the answer is "not committed", not a deadline that ended
		// during a commit whose outcome is then unknown.
		if deadline, _ := ctx.Deadline(); try >= RetryAttempts || time.Until(deadline) < 2*RetryWait {
			return 0, fmt.Errorf("%w: %w", ErrNotCommitted, err)
		}
		select {
		case <-time.After(RetryWait):
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w (the stream did not answer: %w)", ErrNotCommitted, ctx.Err(), err)
		}
	}
	n := uint64(len(msgs))
	if ack.Stream == "" || ack.Batch != id || ack.Count != n || ack.Seq < n {
		return 0, fmt.Errorf("atomic batch of %d: %w: %q", len(msgs), ErrInvalidBatchAck, resp.Data)
	}
	return ack.Seq - n + 1, nil
}
