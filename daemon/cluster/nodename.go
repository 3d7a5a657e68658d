package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/remote"
)

// ErrNodeTaken is wrapped by Start's error when another node, live,
// announces this node's name.
var ErrNodeTaken = errors.New("cluster: node name taken")

// takenWait is how long Start watches an announcement of its own node
// name, found in the directory, for a rewrite: three heartbeats of the
// node announcing it (remote.DefaultHeartbeat).
const takenWait = 3 * remote.DefaultHeartbeat

// checkName reports whether another node announces node and is live: an
// announcement under node's name is in the directory's bucket and is
// rewritten within wait. One that is not rewritten (or lapses) within
// wait is a predecessor's, killed before its TTL ran out: this node takes
// the name over. It returns at once when the bucket holds no announcement
// of node. It does not see a node of the same name that starts at the
// same moment, before either announced.
func checkName(ctx context.Context, js jetstream.JetStream, node string, wait time.Duration) (bool, error) {
	kv, err := js.KeyValue(ctx, remote.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, nil // no node announced anything yet
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", remote.Bucket, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return false, fmt.Errorf("watch %s: %w", remote.Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	var (
		key      string // the key announcing node, once seen; "" while none
		rev      uint64 // its revision then
		deadline <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline:
			return false, nil // not rewritten: a dead node's
		case e, ok := <-w.Updates():
			if !ok {
				return false, fmt.Errorf("watch %s: ended", remote.Bucket)
			}
			if e == nil { // the values present are read
				if key == "" {
					return false, nil
				}
				t := time.NewTimer(wait)
				defer t.Stop()
				deadline = t.C
				continue
			}
			if key != "" && e.Key() != key {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				if key == "" {
					continue
				}
				if deadline != nil {
					return false, nil // lapsed, or withdrawn
				}
				key = ""
				continue
			}
			if len(e.Value()) > remote.MaxAnnouncementBytes {
				continue
			}
			var ann remote.Announcement
			if json.Unmarshal(e.Value(), &ann) != nil || ann.Node != node {
				continue
			}
			if deadline != nil && e.Revision() != rev {
				return true, nil
			}
			key, rev = e.Key(), e.Revision()
		}
	}
}

// nameTaken is Start's error for a node name another live node
// announces (node is checked plain by remote.NewServer; quoted anyway).
func nameTaken(node string) error {
	return fmt.Errorf("%w: node %s is announced by another node, live (it rewrote its announcement within %v): give every node its own --node; a node restarted under its own name waits out its old announcement instead",
		ErrNodeTaken, strconv.Quote(node), takenWait)
}
