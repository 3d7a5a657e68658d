// Command guest-chaos is a misbehaving Go guest for the daemon's tests: each
// route fails in one of the ways DESIGN.md promises to contain. Built by
// `make fixtures` into daemon/testdata/guest-chaos.wasm.
package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/meshd/meshd/guest"
)

var sink [][]byte

func init() {
	guest.Declare("chaos", "1.0.0")
	guest.Publishes("CHAOS_EVENT", "CHAOS_FAIL")
	guest.Handle("GET /chaos/ok", func(w *guest.ResponseWriter, r *guest.Request) {
		w.JSON(200, []byte(`{"ok":true}`))
	})
	// A Go panic: the SDK recovers it, the call fails, the instance is kept
	// out of the pool anyway by the daemon's error path.
	guest.Handle("GET /chaos/panic", func(w *guest.ResponseWriter, r *guest.Request) {
		panic("chaos: deliberate panic")
	})
	// An endless loop: stopped at the call deadline.
	guest.Handle("GET /chaos/loop", func(w *guest.ResponseWriter, r *guest.Request) {
		for n := 0; ; n++ {
			if n < 0 {
				break
			}
		}
		w.JSON(200, nil)
	})
	// Works for ?ms=N milliseconds (default 500), then answers 200: an
	// in-flight request for drain tests.
	guest.Handle("GET /chaos/slow", func(w *guest.ResponseWriter, r *guest.Request) {
		ms, err := strconv.Atoi(r.QueryValue("ms"))
		if err != nil || ms <= 0 {
			ms = 500
		}
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		for time.Now().Before(end) {
		}
		w.JSON(200, []byte(`{"slow":true}`))
	})
	// Allocates until the memory cap: the Go runtime dies (fatal, not a panic).
	guest.Handle("GET /chaos/oom", func(w *guest.ResponseWriter, r *guest.Request) {
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	})
	// Writes a key and publishes, then panics: none of it may be applied.
	guest.Handle("POST /chaos/write-then-panic", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.KVSet("k", r.Body); err != nil {
			w.Fail(err)
			return
		}
		if err := guest.Publish("CHAOS_EVENT", r.Body); err != nil {
			w.Fail(err)
			return
		}
		panic("chaos: panic after effects")
	})
	// Writes a key and publishes, and succeeds.
	guest.Handle("POST /chaos/write", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.KVSet("k", r.Body); err != nil {
			w.Fail(err)
			return
		}
		if err := guest.Publish("CHAOS_EVENT", r.Body); err != nil {
			w.Fail(err)
			return
		}
		w.JSON(201, r.Body)
	})
	guest.Handle("GET /chaos/k", func(w *guest.ResponseWriter, r *guest.Request) {
		v, err := guest.KVGet("k")
		if errors.Is(err, guest.ErrNotFound) {
			w.Problem(404, "not found", "no key k")
			return
		}
		if err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, v)
	})
	guest.Handle("GET /chaos/seen", func(w *guest.ResponseWriter, r *guest.Request) {
		v, err := guest.KVGet("seen")
		if errors.Is(err, guest.ErrNotFound) {
			w.Problem(404, "not found", "no event seen")
			return
		}
		if err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, v)
	})
	// Publishes an event whose handler always fails: it must be retried,
	// then dead-lettered, never dropped.
	guest.Handle("POST /chaos/fail-event", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.Publish("CHAOS_FAIL", r.Body); err != nil {
			w.Fail(err)
			return
		}
		w.JSON(202, nil)
	})
	guest.Subscribe("CHAOS_EVENT", func(e *guest.Event) error {
		return guest.KVSet("seen", e.Data)
	})
	guest.Subscribe("CHAOS_FAIL", func(e *guest.Event) error {
		return errors.New("chaos: this handler always fails")
	})
}

func main() {}
