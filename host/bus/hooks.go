package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Hooks observe the bus. Every field is optional; hooks are called
// synchronously on the publishing or handling goroutine, so they must be
// fast and must not block.
type Hooks struct {
	// Published is called after an event of type typ was stored.
	Published func(typ string)
	// Delivered is called after every handler run of (service, typ) with the
	// 1-based attempt, the handler's error (nil on success) and how long
	// the handler took.
	Delivered func(service, typ string, attempt int, err error, d time.Duration)
	// DeadLettered is called after an event was stored as a dead letter of
	// service.
	DeadLettered func(service, typ string)
	// ConsumerReplaced is called when Subscribe found the durable consumer
	// of (service, typ) unusable (its stored state cannot be opened) and
	// created a replacement, which redelivers every stored event of typ.
	ConsumerReplaced func(service, typ string)
}

func (h *Hooks) published(typ string) {
	if h.Published != nil {
		h.Published(typ)
	}
}

func (h *Hooks) delivered(service, typ string, attempt int, err error, d time.Duration) {
	if h.Delivered != nil {
		h.Delivered(service, typ, attempt, err, d)
	}
}

func (h *Hooks) consumerReplaced(service, typ string) {
	if h.ConsumerReplaced != nil {
		h.ConsumerReplaced(service, typ)
	}
}

func (h *Hooks) deadLettered(service, typ string) {
	if h.DeadLettered != nil {
		h.DeadLettered(service, typ)
	}
}

// ConsumerInfo is the delivery state of one subscription's durable
// consumer.
type ConsumerInfo struct {
	Service string `json:"service"`
	Type    string `json:"type"`
	// Pending is the number of stored events not yet delivered.
	Pending uint64 `json:"pending"`
	// AckPending is the number delivered and not yet acknowledged.
	AckPending uint64 `json:"ack_pending"`
	// Redelivered is the number of unacknowledged events delivered more
	// than once.
	Redelivered uint64 `json:"redelivered"`
}

// Consumers returns the state of every subscription's durable consumer on
// the event stream (including those of services not running now), sorted
// by service then type.
func (b *Bus) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	st, err := b.js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("bus: consumers: %w", err)
	}
	lister := st.ListConsumers(ctx)
	var out []ConsumerInfo
	for ci := range lister.Info() {
		service, typ, ok := b.consumerOwner(ci)
		if !ok {
			continue
		}
		out = append(out, ConsumerInfo{
			Service:     service,
			Type:        typ,
			Pending:     ci.NumPending,
			AckPending:  uint64(max(ci.NumAckPending, 0)),
			Redelivered: uint64(max(ci.NumRedelivered, 0)),
		})
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("bus: consumers: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Type < out[j].Type
	})
	return out, nil
}

// consumerOwner recovers (service, type) of a consumer made by Subscribe
// from its metadata.
func (b *Bus) consumerOwner(ci *jetstream.ConsumerInfo) (service, typ string, ok bool) {
	md := ci.Config.Metadata
	return md[metaService], md[metaType], md[metaService] != ""
}

const (
	metaService = "meshd_service"
	metaType    = "meshd_type"
)
