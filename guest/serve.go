package guest

import (
	"fmt"

	"github.com/meshd/meshd/abi"
)

// State of the current call, reused between calls.
var (
	curReq   Request
	curResp  ResponseWriter
	curEvent Event
)

// failCall writes msg as the call's output and returns a failure code.
func failCall(code abi.Code, msg string) abi.Code {
	outBuf = append(outBuf[:0], msg...)
	_ = writeOutput(outBuf)
	return code
}

// recovered turns a recovered panic value into a failed call.
func recovered(what string, p any) abi.Code {
	var msg string
	switch v := p.(type) {
	case error:
		msg = v.Error()
	case string:
		msg = v
	default:
		msg = fmt.Sprint(v)
	}
	return failCall(abi.CodeInternal, what+" panicked: "+msg)
}

// describe serves meshd_describe.
func describe() (code abi.Code) {
	defer func() {
		if p := recover(); p != nil {
			code = recovered("describe", p)
		}
	}()
	outBuf = appendDeclaration(outBuf[:0])
	if err := writeOutput(outBuf); err != nil {
		return failCall(abi.CodeInternal, "describe: "+err.Error())
	}
	return abi.CodeOK
}

// serveHTTP serves meshd_http: it reads the request, runs the handler of
// its route and writes the response.
func serveHTTP(n int32) (code abi.Code) {
	defer func() {
		if p := recover(); p != nil {
			code = recovered("http handler", p)
		}
	}()
	in, err := readInput(n)
	if err != nil {
		return failCall(abi.CodeInternal, "http: reading input: "+err.Error())
	}
	r, w := &curReq, &curResp
	if err := r.decode(in); err != nil {
		return failCall(abi.CodeInvalid, "http: decoding request: "+err.Error())
	}
	w.reset()
	if h := handlers[r.Route]; h != nil {
		h(w, r)
	} else {
		w.Problem(404, "Not Found", "no handler for route "+quote(r.Route))
	}
	if w.failed != nil {
		return failCall(abi.CodeInternal, w.failed.Error())
	}
	outBuf = w.appendResponse(outBuf[:0])
	if err := writeOutput(outBuf); err != nil {
		return failCall(abi.CodeInternal, "http: writing response: "+err.Error())
	}
	return abi.CodeOK
}

// serveEvent serves meshd_event: it reads the event and runs the handler of
// its type. A handler error fails the call, so the host redelivers.
func serveEvent(n int32) (code abi.Code) {
	defer func() {
		if p := recover(); p != nil {
			code = recovered("event handler", p)
		}
	}()
	in, err := readInput(n)
	if err != nil {
		return failCall(abi.CodeInternal, "event: reading input: "+err.Error())
	}
	e := &curEvent
	if err := e.decode(in); err != nil {
		return failCall(abi.CodeInvalid, "event: decoding: "+err.Error())
	}
	h := subscribers[e.Type]
	if h == nil {
		return failCall(abi.CodeNotFound, "event: no handler for type "+quote(e.Type))
	}
	if err := h(e); err != nil {
		return failCall(abi.CodeInternal, err.Error())
	}
	return abi.CodeOK
}
