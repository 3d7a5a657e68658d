package main

import (
	"errors"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

// hostEnv is env on the real host functions.
type hostEnv struct{ svcenv.Host }

// Get calls GET path?query on service (guest.Call, ABI v1.2). The host
// bounds it by the current request's deadline and retries it (GET is
// idempotent) under its retry budget and the (user, service) circuit
// breaker.
func (hostEnv) Get(service, path, query string) (int, []byte, error) {
	resp, err := guest.Call(service, &guest.CallRequest{Method: "GET", Path: path, Query: query})
	if err != nil {
		return 0, nil, err
	}
	return resp.Status, resp.Body, nil
}

// callFailure is the short reason a profile gives for a call to the order
// service that got no answer: a few fixed words by the error's ABI code,
// never the host's message (that is logged).
func callFailure(err error) string {
	switch {
	case errors.Is(err, guest.ErrDenied):
		return "call to the order service not granted"
	case errors.Is(err, guest.ErrTimeout):
		return "order service timed out"
	case errors.Is(err, guest.ErrNotFound):
		return "order service not found" // not loaded, or without the route
	case errors.Is(err, guest.ErrTooLarge):
		return "order service answer too large"
	case errors.Is(err, guest.ErrUnavailable):
		return "order service unavailable" // down, busy or its circuit open
	}
	return "call to the order service failed"
}
