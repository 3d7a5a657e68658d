package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/fault"
)

// JobReplay is the kind of a replay's job (admin.Job.Kind).
const JobReplay = "replay"

// liveBus is the bus, or bus.ErrClosed before it is set.
func (d *Dispatcher) liveBus() (*bus.Bus, error) {
	if b := d.bus.Load(); b != nil {
		return b, nil
	}
	return nil, bus.ErrClosed
}

// EventsHandler is the events admin API, mounted on the admin listener
// under /v1/events/:
//
//	GET  /v1/events/dlq?service=NAME            dead letters (JSON array)
//	POST /v1/events/dlq/redrive?service=NAME[&id=EVENT_ID...]
//	POST /v1/events/replay?service=NAME         rebuild the read model: a job
//	GET  /v1/events/consumers                   consumer states
//
// A replay drops the read model before rebuilding it, so it runs as a job
// of jobs (kind JobReplay), never inside the request: the service is
// checked at once (400 without ?service= or with an invalid name or a
// service with no read model, 404 for one not loaded), then the answer is
// 202 with Location /v1/jobs/{id}, or 409 with the running replay's id
// when one runs for the service. Every error is problem+json: 4xx for the
// operator's mistakes, 5xx for faults (503 before the bus started).
func (d *Dispatcher) EventsHandler(jobs *admin.Jobs) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events/dlq", func(w http.ResponseWriter, r *http.Request) {
		name, b, err := d.eventsTarget(r)
		var dls []bus.DeadLetter
		if err == nil {
			dls, err = b.DeadLetters(r.Context(), name)
		}
		if err != nil {
			admin.WriteError(w, err)
			return
		}
		out := make([]deadLetterJSON, len(dls))
		for i, dl := range dls {
			out[i] = deadLetterJSON{ID: dl.Event.ID, Type: dl.Event.Type, Source: dl.Event.Source,
				Service: dl.Service, Reason: dl.Reason, Attempts: dl.Attempts, FailedAt: dl.FailedAt,
				Data: string(dl.Event.Data)}
		}
		reply(w, out)
	})
	mux.HandleFunc("POST /v1/events/dlq/redrive", func(w http.ResponseWriter, r *http.Request) {
		name, b, err := d.eventsTarget(r)
		n := 0
		if err == nil {
			n, err = b.Redrive(r.Context(), name, r.URL.Query()["id"]...)
		}
		if err != nil {
			admin.WriteError(w, err)
			return
		}
		reply(w, map[string]int{"redriven": n})
	})
	mux.HandleFunc("POST /v1/events/replay", func(w http.ResponseWriter, r *http.Request) {
		name, _, err := d.eventsTarget(r)
		if err == nil {
			_, err = d.replayTarget(name)
		}
		if err != nil {
			admin.WriteError(w, err)
			return
		}
		jobs.StartHTTP(w, JobReplay, name, func(ctx context.Context) (any, error) {
			res, err := d.Replay(ctx, name)
			if err != nil {
				// What was done before the failure: the read model is
				// partly rebuilt until a replay succeeds.
				return nil, fmt.Errorf("%w (read-model keys dropped: %d, events replayed: %d, writes applied: %d)",
					err, res.Dropped, res.Events, res.Writes)
			}
			return res, nil
		})
	})
	mux.HandleFunc("GET /v1/events/consumers", func(w http.ResponseWriter, r *http.Request) {
		b, err := d.liveBus()
		var cs []bus.ConsumerInfo
		if err == nil {
			cs, err = b.Consumers(r.Context())
		}
		if err != nil {
			admin.WriteError(w, err)
			return
		}
		reply(w, cs)
	})
	return mux
}

// eventsTarget is the service a request's ?service= names and the bus:
// an Invalid fault without the parameter or with a name no service can
// have, an Unavailable one before the bus started.
func (d *Dispatcher) eventsTarget(r *http.Request) (string, *bus.Bus, error) {
	name := r.URL.Query().Get("service")
	switch {
	case name == "":
		return "", nil, fault.New("", fault.Invalid, errors.New("the service parameter (?service=NAME) is required"))
	case !abi.ValidServiceName(name):
		// Not echoed: the name is whatever the client sent.
		return "", nil, fault.New("", fault.Invalid, fmt.Errorf("the service parameter (%d bytes) is not a service name", len(name)))
	}
	b, err := d.liveBus()
	if err != nil {
		return "", nil, fault.New(name, fault.Unavailable, err)
	}
	return name, b, nil
}

// reply writes v as a JSON answer.
func reply(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		admin.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	_, _ = w.Write(append(body, '\n'))
}

type deadLetterJSON struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Source   string    `json:"source"`
	Service  string    `json:"service"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
	Data     string    `json:"data"`
}
