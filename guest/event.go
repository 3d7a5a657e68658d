package guest

import (
	"github.com/meshd/meshd/abi"
)

// Event is a delivered event (CloudEvents 1.0 attributes).
//
// The SDK reuses the Event and its Data for the next call: both are valid
// only until the handler returns. The strings may be kept.
type Event struct {
	ID              string // unique per event; use it to make handlers idempotent
	Source          string // the publishing service
	Type            string // "ORDER_CREATED"
	Time            string // RFC 3339 with nanoseconds, UTC
	DataContentType string // "application/json"
	TraceParent     string // W3C trace context, may be empty
	Attempt         uint32 // 1 on first delivery, 2 on the first redelivery, ...
	Data            []byte // the payload (JSON)

	dec abi.Event
}

// decode fills e from an encoded abi.Event held in in. Data aliases in.
func (e *Event) decode(in []byte) error {
	d := &e.dec
	if err := d.Decode(in); err != nil {
		return err
	}
	str := cutStrings(in, d.Data)
	e.ID = str(d.ID)
	e.Source = str(d.Source)
	e.Type = str(d.Type)
	e.Time = str(d.Time)
	e.DataContentType = str(d.DataContentType)
	e.TraceParent = str(d.TraceParent)
	e.Attempt = d.Attempt
	e.Data = d.Data
	return nil
}
