// Command guest-conformance is the Go guest of the cross-language ABI
// conformance suite (package conformance): the routes of
// host/testdata/conformance.wat under /go, event type GO_EVENT, service
// conformance-go, written with the Go SDK. `make fixtures` builds it into
// conformance/testdata/guest-conformance.wasm.
//
// POST /go/work is the benchmark's handler (not in the WAT guest): it
// reads a small JSON order, stores it under work:<id> and publishes it.
package main

import (
	"errors"
	"os"
	"unsafe"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

const (
	name   = "conformance-go"
	prefix = "/go"
	event  = "GO_EVENT"
)

// The raw imports, for the routes that hand the host a bad pointer on
// purpose (the SDK never does).
//
//go:wasmimport meshd kv_get
func rawKVGet(keyPtr, keyLen, buf, bufCap uint32) int32

//go:wasmimport meshd call
func rawCall(calleePtr, calleeLen, reqPtr, reqLen uint32, flags int32) int32

//go:wasmimport meshd last_error
func rawLastError(buf, bufCap uint32) int32

// badPtr lies past the end of any guest memory.
const badPtr = 0xFFFFFFF0

func strPtr(s string) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))) }

var errBuf [4096]byte

func lastError() []byte {
	n := rawLastError(uint32(uintptr(unsafe.Pointer(&errBuf[0]))), uint32(len(errBuf)))
	if n < 0 || int(n) > len(errBuf) {
		return nil
	}
	return errBuf[:n]
}

func errorMessage(err error) []byte {
	var e *guest.Error
	if errors.As(err, &e) {
		return []byte(e.Msg)
	}
	return []byte(err.Error())
}

func respond(w *guest.ResponseWriter, status int, body []byte) { w.JSON(status, body) }

func getKey(w *guest.ResponseWriter, key string) {
	v, err := guest.KVGet(key)
	switch {
	case errors.Is(err, guest.ErrNotFound):
		respond(w, 404, []byte("{}"))
	case err != nil:
		w.Fail(err)
	default:
		respond(w, 200, v)
	}
}

func callAndAnswer(w *guest.ResponseWriter, req *guest.CallRequest) {
	resp, err := guest.Call(name, req)
	if err != nil {
		respond(w, 502, errorMessage(err))
		return
	}
	respond(w, resp.Status, resp.Body)
}

func init() {
	guest.Declare(name, "1.0.0")
	guest.Publishes(event)
	guest.Subscribe(event, func(e *guest.Event) error {
		if err := guest.KVSet("last-event", e.Data); err != nil {
			return err
		}
		guest.Log(guest.LevelInfo, "conformance guest handled an event")
		return nil
	})
	guest.Handle("POST "+prefix+"/echo", func(w *guest.ResponseWriter, r *guest.Request) { respond(w, 200, r.Body) })
	guest.Handle("POST "+prefix+"/kv", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.KVSet("value", r.Body); err != nil {
			respond(w, 500, errorMessage(err))
			return
		}
		getKey(w, "value")
	})
	guest.Handle("GET "+prefix+"/kv", func(w *guest.ResponseWriter, r *guest.Request) { getKey(w, "value") })
	guest.Handle("GET "+prefix+"/event", func(w *guest.ResponseWriter, r *guest.Request) { getKey(w, "last-event") })
	guest.Handle("POST "+prefix+"/publish", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.Publish(event, r.Body); err != nil {
			respond(w, 500, errorMessage(err))
			return
		}
		respond(w, 202, []byte("{}"))
	})
	guest.Handle("GET "+prefix+"/badptr", func(w *guest.ResponseWriter, r *guest.Request) {
		key := "value"
		if rawKVGet(strPtr(key), uint32(len(key)), badPtr, 64) == -1 {
			respond(w, 200, lastError())
			return
		}
		respond(w, 500, []byte("{}"))
	})
	guest.Handle("GET "+prefix+"/trap", func(w *guest.ResponseWriter, r *guest.Request) {
		// The Go SDK turns a panic into a clean failure; exiting is the
		// trap (a Go guest that runs out of memory ends the same way).
		os.Exit(3)
	})
	guest.Handle("GET "+prefix+"/denied", func(w *guest.ResponseWriter, r *guest.Request) {
		err := guest.Publish("NOT_GRANTED", []byte("{}"))
		if errors.Is(err, guest.ErrDenied) {
			respond(w, 403, errorMessage(err))
			return
		}
		respond(w, 500, []byte("{}"))
	})
	guest.Handle("GET "+prefix+"/whoami", func(w *guest.ResponseWriter, r *guest.Request) {
		respond(w, 200, []byte(r.Consumer))
	}, guest.Internal())
	guest.Handle("POST "+prefix+"/call", func(w *guest.ResponseWriter, r *guest.Request) {
		callAndAnswer(w, &guest.CallRequest{Method: "POST", Path: prefix + "/echo", Body: r.Body})
	})
	guest.Handle("GET "+prefix+"/call-whoami", func(w *guest.ResponseWriter, r *guest.Request) {
		callAndAnswer(w, &guest.CallRequest{Method: "GET", Path: prefix + "/whoami"})
	})
	guest.Handle("GET "+prefix+"/call-denied", func(w *guest.ResponseWriter, r *guest.Request) {
		_, err := guest.Call("not-granted", &guest.CallRequest{Method: "GET", Path: prefix + "/echo"})
		if errors.Is(err, guest.ErrDenied) {
			respond(w, 403, errorMessage(err))
			return
		}
		respond(w, 500, []byte("{}"))
	})
	guest.Handle("GET "+prefix+"/call-badptr", func(w *guest.ResponseWriter, r *guest.Request) {
		if rawCall(strPtr(name), uint32(len(name)), badPtr, 16, 0) == -1 {
			respond(w, 200, lastError())
			return
		}
		respond(w, 500, []byte("{}"))
	})
	guest.Handle("POST "+prefix+"/work", work)
}

// work: {"id":"o-1","sku":"book","qty":2} is stored under work:<id> and
// published; 202 with {"id":...}.
func work(w *guest.ResponseWriter, r *guest.Request) {
	var id, sku string
	var qty int64
	var rd jsonx.Reader
	rd.Reset(r.Body)
	for k, ok := rd.ObjectNext(); ok; k, ok = rd.ObjectNext() {
		switch string(k) {
		case "id":
			id = rd.String()
		case "sku":
			sku = rd.String()
		case "qty":
			qty = rd.Int()
		default:
			rd.Skip()
		}
	}
	if err := rd.Finish(); err != nil || id == "" {
		w.Problem(400, "Bad Request", "want {\"id\",\"sku\",\"qty\"}")
		return
	}
	jw := w.JSONWriter()
	jw.ObjectStart()
	jw.StringField("id", id)
	jw.StringField("sku", sku)
	jw.IntField("qty", qty)
	jw.ObjectEnd()
	if err := guest.KVSet(guest.Key("work", id), jw.Bytes()); err != nil {
		w.Fail(err)
		return
	}
	if err := guest.Publish(event, jw.Bytes()); err != nil {
		w.Fail(err)
		return
	}
	jw.Reset()
	jw.ObjectStart()
	jw.StringField("id", id)
	jw.ObjectEnd()
	w.JSON(202, jw.Bytes())
}

func main() {}
