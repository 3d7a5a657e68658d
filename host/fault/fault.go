package fault

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/internal/storefail"
	"github.com/meshd/meshd/runtime"
)

// Kind is a class of failure. The zero Kind is Failed: an error nobody
// classified is a fault of the service (500), never blamed on the caller.
type Kind uint8

// Kinds of failure.
const (
	// Failed: the service failed (trapped, answered an error code, returned
	// a malformed or oversized answer) or something else broke. HTTP 500.
	Failed Kind = iota
	// Busy: every instance stayed busy past the wait for one. HTTP 503
	// with Retry-After.
	Busy
	// Timeout: the work ran past its deadline. HTTP 504.
	Timeout
	// TooLarge: the request passed a size cap. HTTP 413.
	TooLarge
	// Unavailable: nothing is able to serve (not loaded, draining,
	// closed). HTTP 503 with Retry-After.
	Unavailable
	// StoreRefused: the store refuses writes (its disk is full or
	// failing), so the work's effects could not be kept. HTTP 503 with a
	// longer Retry-After.
	StoreRefused
	// Denied: the operator did not grant it. HTTP 403.
	Denied
	// NotFound: no such service, route, key or job. HTTP 404.
	NotFound
	// Invalid: the caller's request is malformed. HTTP 400.
	Invalid
	// CircuitOpen: the circuit breaker in front of a callee is open after
	// repeated failures; the call was not attempted. HTTP 503 with
	// Retry-After.
	CircuitOpen
	// Conflict: the request conflicts with work in progress (a job of the
	// same kind already running). HTTP 409; over the ABI CodeUnavailable,
	// since the work in progress ends and a retry then succeeds.
	Conflict
	// Partial: the request's key writes were stored but its events could
	// not be published (their stream stayed unavailable): the outcome is
	// partly applied, so a retry would make the writes again. HTTP 500,
	// no Retry-After.
	Partial
	// Overloaded: admission control shed the request, the event pipeline
	// behind its route being behind (on the node that serves the route,
	// for a request another node's gateway forwarded). HTTP 503 with
	// Retry-After.
	Overloaded

	numKinds
)

// kindInfo is what a Kind answers with.
type kindInfo struct {
	name   string
	status int
	code   abi.Code
	retry  time.Duration
}

var kinds = [numKinds]kindInfo{
	Failed:       {"failed", http.StatusInternalServerError, abi.CodeInternal, 0},
	Busy:         {"busy", http.StatusServiceUnavailable, abi.CodeUnavailable, time.Second},
	Timeout:      {"timeout", http.StatusGatewayTimeout, abi.CodeTimeout, 0},
	TooLarge:     {"too large", http.StatusRequestEntityTooLarge, abi.CodeTooLarge, 0},
	Unavailable:  {"unavailable", http.StatusServiceUnavailable, abi.CodeUnavailable, time.Second},
	StoreRefused: {"store refuses writes", http.StatusServiceUnavailable, abi.CodeUnavailable, StoreRetryAfter},
	Denied:       {"denied", http.StatusForbidden, abi.CodeDenied, 0},
	NotFound:     {"not found", http.StatusNotFound, abi.CodeNotFound, 0},
	Invalid:      {"invalid", http.StatusBadRequest, abi.CodeInvalid, 0},
	CircuitOpen:  {"circuit open", http.StatusServiceUnavailable, abi.CodeUnavailable, time.Second},
	Conflict:     {"conflict", http.StatusConflict, abi.CodeUnavailable, 0},
	Partial:      {"partly applied", http.StatusInternalServerError, abi.CodeInternal, 0},
	Overloaded:   {"overloaded", http.StatusServiceUnavailable, abi.CodeUnavailable, time.Second},
}

// StoreRetryAfter is the Retry-After of StoreRefused: longer than a busy
// service's, since a full disk waits for someone to free space; short
// enough that clients see the recovery soon after (the store is probed at
// most once a second).
const StoreRetryAfter = 5 * time.Second

func (k Kind) info() kindInfo {
	if k >= numKinds {
		return kinds[Failed]
	}
	return kinds[k]
}

// String returns the kind's name ("busy", "timeout", ...).
func (k Kind) String() string {
	if k >= numKinds {
		return "kind " + strconv.Itoa(int(k))
	}
	return kinds[k].name
}

// Status is the HTTP status that answers the kind. An unknown Kind is
// Failed's.
func (k Kind) Status() int { return k.info().status }

// Code is the ABI code that answers the kind to a guest (a call's result).
// An unknown Kind is Failed's.
func (k Kind) Code() abi.Code { return k.info().code }

// RetryAfter is how long a client should wait before retrying a failure
// of this kind; 0 when retrying as is does not help or is not advised.
func (k Kind) RetryAfter() time.Duration { return k.info().retry }

// Error is a failure of a service's work, with its kind. Recover it with
// errors.As, or with Classify, which also classifies the errors of the
// layers below.
type Error struct {
	// Service is the service the failure concerns; "" when none.
	Service string
	Kind    Kind
	// Err is the cause, for logs; it is never shown to an HTTP client.
	Err error
	// RetryAfter, when positive, replaces the kind's (a circuit breaker
	// knows when it half-opens).
	RetryAfter time.Duration
}

// New returns a *Error.
func New(service string, kind Kind, err error) *Error {
	return &Error{Service: service, Kind: kind, Err: err}
}

// Error reads "service orders: busy: <cause>", leaving out what is unset.
func (e *Error) Error() string {
	var b []byte
	if e.Service != "" {
		b = append(b, "service "...)
		b = append(b, e.Service...)
		b = append(b, ": "...)
	}
	b = append(b, e.Kind.String()...)
	if e.Err != nil {
		b = append(b, ": "...)
		b = append(b, e.Err.Error()...)
	}
	return string(b)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Retry is the Retry-After to answer with: RetryAfter when set, else the
// kind's; 0 for none.
func (e *Error) Retry() time.Duration {
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return e.Kind.RetryAfter()
}

// Status is e.Kind.Status().
func (e *Error) Status() int { return e.Kind.Status() }

// Code is e.Kind.Code(): the ABI code a guest sees for the error (it
// makes a *Error a host.Coder, which the call host function reads).
func (e *Error) Code() abi.Code { return e.Kind.Code() }

// Classify returns err as a *Error of service, nil for nil:
//   - when err wraps a *Error, that error (with Service set to service,
//     and err as its cause, when it had no service);
//   - else by the runtime's sentinels: runtime.ErrBusy is Busy;
//     runtime.ErrTimeout and context.DeadlineExceeded are Timeout (err
//     stays the cause, so a runtime.TimeoutError's Limit is still found
//     with errors.As); runtime.ErrOutputTooLarge is Failed, since the
//     service's answer passed its cap, not the client's request;
//     runtime.ErrTooLarge is TooLarge; runtime.ErrClosed is Unavailable;
//     a store refusing writes (kv.ErrWritesRefused, bus.ErrWritesRefused)
//     is StoreRefused;
//   - else Failed.
func Classify(service string, err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		if fe.Service != "" || service == "" {
			return fe
		}
		return &Error{Service: service, Kind: fe.Kind, Err: err, RetryAfter: fe.RetryAfter}
	}
	var k Kind
	switch {
	case errors.Is(err, runtime.ErrBusy):
		k = Busy
	case errors.Is(err, runtime.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		k = Timeout
	case errors.Is(err, runtime.ErrOutputTooLarge):
		k = Failed
	case errors.Is(err, runtime.ErrTooLarge):
		k = TooLarge
	case errors.Is(err, runtime.ErrClosed):
		k = Unavailable
	case errors.Is(err, storefail.ErrWritesRefused):
		k = StoreRefused
	default:
		k = Failed
	}
	return &Error{Service: service, Kind: k, Err: err}
}

// Interface guards.
var _ error = (*Error)(nil)
