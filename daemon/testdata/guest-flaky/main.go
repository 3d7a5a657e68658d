// Command guest-flaky is a test guest for the event tests in
// daemon/events_test.go; `make fixtures` builds it into
// daemon/testdata/guest-flaky.wasm.
//
// FLAKY {"id":ID,"fail":N} counts its deliveries of ID in the key
// "count:ID" and publishes FLAKY_DONE, but fails its first N attempts, so
// both effects must be applied exactly once. N < 0 fails until POST
// /flaky/fix was called (a fix deployed by the operator).
package main

import (
	"errors"
	"strconv"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

func init() {
	guest.Declare("flaky", "1.0.0")
	guest.Publishes("FLAKY_DONE")
	guest.Subscribe("FLAKY", handle)
	guest.Handle("POST /flaky/fix", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.KVSet("fixed", []byte("1")); err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, []byte(`{"fixed":true}`))
	})
	guest.Handle("GET /flaky/count/{id}", func(w *guest.ResponseWriter, r *guest.Request) {
		v, err := guest.KVGet("count:" + r.PathValue("id"))
		if errors.Is(err, guest.ErrNotFound) {
			v = []byte("0")
		} else if err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, []byte(`{"count":`+string(v)+`}`))
	})
}

func handle(e *guest.Event) error {
	var id string
	var fail int64
	var r jsonx.Reader
	r.Reset(e.Data)
	for k, ok := r.ObjectNext(); ok; k, ok = r.ObjectNext() {
		switch string(k) {
		case "id":
			id = r.String()
		case "fail":
			fail = r.Int()
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil || id == "" {
		return errors.New("bad FLAKY data")
	}
	// Effects first, then the failure: a failed attempt must leave none.
	n := int64(0)
	if v, err := guest.KVGet("count:" + id); err == nil {
		n, _ = strconv.ParseInt(string(v), 10, 64)
	}
	if err := guest.KVSet("count:"+id, []byte(strconv.FormatInt(n+1, 10))); err != nil {
		return err
	}
	if err := guest.Publish("FLAKY_DONE", []byte(`{"id":"`+id+`"}`)); err != nil {
		return err
	}
	if fail < 0 {
		if _, err := guest.KVGet("fixed"); err != nil {
			return errors.New("flaky: broken until fixed")
		}
		return nil
	}
	if int64(e.Attempt) <= fail {
		return errors.New("flaky: failing attempt " + strconv.Itoa(int(e.Attempt)))
	}
	return nil
}

func main() {}
