package bus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/abi"
)

// Event is a CloudEvents 1.0 event as meshd carries it.
type Event struct {
	// ID identifies the event; with Source it is unique. Publishing the same
	// ID twice within the duplicate window stores the event once.
	ID string
	// Source is the context the event happened in (for meshd, the
	// publishing service).
	Source string
	// Type names what happened; it is also the subject token subscribers
	// filter on. See ValidType.
	Type string
	// Time the event happened. Publish fills the zero time with now.
	Time time.Time
	// DataContentType is the media type of Data ("" means unspecified).
	DataContentType string
	// TraceParent is a W3C trace context traceparent, carried as is.
	TraceParent string
	// Data is the payload.
	Data []byte
	// Attempt is the delivery attempt, 1-based. Set on delivery; ignored by
	// Publish.
	Attempt int
}

// NewEvent returns an event with a fresh UUID, the current UTC time and a
// JSON content type.
func NewEvent(source, typ string, data []byte) Event {
	return Event{
		ID:              uuid.NewString(),
		Source:          source,
		Type:            typ,
		Time:            time.Now().UTC(),
		DataContentType: "application/json",
		Data:            data,
	}
}

// ValidType reports whether typ is a valid event type (abi.ValidEventType:
// one rule for the guest SDK, the host and the bus).
func ValidType(typ string) bool { return abi.ValidEventType(typ) == nil }

// ValidService reports whether name is a valid subscribing service name
// (the same rule as host/kv).
func ValidService(name string) bool { return abi.ValidServiceName(name) }

// Header names of the CloudEvents NATS binding (binary mode) and meshd's
// dead-letter annotations.
const (
	hdrSpecVersion = "ce-specversion"
	hdrID          = "ce-id"
	hdrSource      = "ce-source"
	hdrType        = "ce-type"
	hdrTime        = "ce-time"
	hdrContentType = "content-type"
	hdrCEDataCT    = "ce-datacontenttype" // accepted on decode
	hdrTraceParent = "traceparent"

	hdrDLQReason   = "meshd-dlq-reason"
	hdrDLQService  = "meshd-dlq-service"
	hdrDLQAttempts = "meshd-dlq-attempts"
	hdrDLQTime     = "meshd-dlq-time"
	hdrDLQSeq      = "meshd-dlq-stream-seq"

	specVersion = "1.0"
)

// validate checks what Publish needs.
func (ev *Event) validate() error {
	var errs []error
	if ev.ID == "" {
		errs = append(errs, errors.New("empty id"))
	}
	if ev.Source == "" {
		errs = append(errs, errors.New("empty source"))
	}
	if !ValidType(ev.Type) {
		errs = append(errs, fmt.Errorf("invalid type %q (want dot-separated tokens of [A-Za-z0-9_-], at most %d bytes)", ev.Type, abi.MaxEventTypeLen))
	}
	for name, v := range map[string]string{"id": ev.ID, "source": ev.Source, "datacontenttype": ev.DataContentType, "traceparent": ev.TraceParent} {
		if strings.ContainsAny(v, "\r\n") {
			errs = append(errs, fmt.Errorf("%s contains a line break", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: invalid event: %w", err)
	}
	return nil
}

// header encodes ev's attributes as NATS headers (CloudEvents binary mode).
func (ev *Event) header() nats.Header {
	h := nats.Header{}
	h.Set(hdrSpecVersion, specVersion)
	h.Set(hdrID, ev.ID)
	h.Set(hdrSource, ev.Source)
	h.Set(hdrType, ev.Type)
	h.Set(hdrTime, ev.Time.UTC().Format(time.RFC3339Nano))
	if ev.DataContentType != "" {
		h.Set(hdrContentType, ev.DataContentType)
	}
	if ev.TraceParent != "" {
		h.Set(hdrTraceParent, ev.TraceParent)
	}
	return h
}

// decodeEvent reads an event from headers and payload. On error it still
// returns what it could read, for the dead-letter record.
func decodeEvent(h nats.Header, data []byte) (Event, error) {
	ev := Event{
		ID:              h.Get(hdrID),
		Source:          h.Get(hdrSource),
		Type:            h.Get(hdrType),
		DataContentType: h.Get(hdrContentType),
		TraceParent:     h.Get(hdrTraceParent),
		Data:            data,
	}
	if ev.DataContentType == "" {
		ev.DataContentType = h.Get(hdrCEDataCT)
	}
	var errs []error
	if v := h.Get(hdrSpecVersion); v != specVersion {
		errs = append(errs, fmt.Errorf("%s is %q, want %q", hdrSpecVersion, v, specVersion))
	}
	for _, k := range []string{hdrID, hdrSource, hdrType} {
		if h.Get(k) == "" {
			errs = append(errs, fmt.Errorf("missing %s", k))
		}
	}
	if ts := h.Get(hdrTime); ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			errs = append(errs, fmt.Errorf("bad %s: %w", hdrTime, err))
		}
		ev.Time = t
	}
	return ev, errors.Join(errs...)
}
