package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A replicated bucket is read through its stream's leader. The key-value
// API's Get asks any replica (a direct get), and a replica may not have
// applied a write the leader acknowledged yet: a handler on one node could
// then read a key as it was before a handler of the same serial key on
// another node wrote it, even though the two held the key's lease one
// after the other. The leader stores a write before it acknowledges it,
// so a read through it follows every acknowledged write.

// getLeader returns the last message of key's subject (escaped) as the
// stream's leader has it: its value, or ErrNotFound when there is none or
// it is a delete mark.
func (s *Store) getLeader(ctx context.Context, escaped string) ([]byte, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{s.subject + escaped})
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := s.js.Conn().RequestWithContext(ctx, s.apiPrefix+"STREAM.MSG.GET."+s.streamName(), req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error,omitempty"`
		Message *struct {
			Header []byte `json:"hdrs,omitempty"`
			Data   []byte `json:"data,omitempty"`
		} `json:"message,omitempty"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("message get answer: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, ErrNotFound
		}
		return nil, resp.Error
	}
	if resp.Message == nil {
		return nil, errors.New("message get answer without a message")
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("message get answer: %w", err)
		}
		if op := h.Get(kvOperation); op == "DEL" || op == "PURGE" {
			return nil, ErrNotFound
		}
	}
	if resp.Message.Data == nil {
		return []byte{}, nil
	}
	return resp.Message.Data, nil
}

// streamName is the name of the bucket's stream.
func (s *Store) streamName() string { return "KV_" + BucketPrefix + s.service }

// apiPrefix returns the JetStream API prefix of opts, ending in a dot.
func apiPrefix(opts jetstream.JetStreamOptions) string {
	switch {
	case opts.APIPrefix != "":
		return strings.TrimSuffix(opts.APIPrefix, ".") + "."
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}
