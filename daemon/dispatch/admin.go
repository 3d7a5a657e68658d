package dispatch

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/meshd/meshd/host/bus"
)

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
//	POST /v1/events/replay?service=NAME         rebuild the read model
//	GET  /v1/events/consumers                   consumer states
func (d *Dispatcher) EventsHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/events/dlq", func(w http.ResponseWriter, r *http.Request) {
		var dls []bus.DeadLetter
		b, err := d.liveBus()
		if err == nil {
			dls, err = b.DeadLetters(r.Context(), r.URL.Query().Get("service"))
		}
		out := make([]deadLetterJSON, len(dls))
		for i, dl := range dls {
			out[i] = deadLetterJSON{ID: dl.Event.ID, Type: dl.Event.Type, Source: dl.Event.Source,
				Service: dl.Service, Reason: dl.Reason, Attempts: dl.Attempts, FailedAt: dl.FailedAt,
				Data: string(dl.Event.Data)}
		}
		reply(w, out, err)
	})
	mux.HandleFunc("POST /v1/events/dlq/redrive", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		b, err := d.liveBus()
		if err == nil {
			n, err = b.Redrive(r.Context(), r.URL.Query().Get("service"), r.URL.Query()["id"]...)
		}
		reply(w, map[string]int{"redriven": n}, err)
	})
	mux.HandleFunc("POST /v1/events/replay", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.Replay(r.Context(), r.URL.Query().Get("service"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/events/consumers", func(w http.ResponseWriter, r *http.Request) {
		var cs []bus.ConsumerInfo
		b, err := d.liveBus()
		if err == nil {
			cs, err = b.Consumers(r.Context())
		}
		reply(w, cs, err)
	})
	return mux
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
