package runtime

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by Load and Invoke; test them with errors.Is. Each
// carries the package prefix ("runtime: module closed"), so that it names
// its origin wherever it is wrapped.
var (
	// ErrInvalidModule: the module is not valid Wasm, breaks ABI v1, or
	// failed to initialise. The message says which.
	ErrInvalidModule = errors.New("runtime: invalid module")
	// ErrInvalidConfig: a ModuleConfig limit is out of its range.
	ErrInvalidConfig = errors.New("runtime: invalid module configuration")
	// ErrBusy: every instance stayed busy past the acquire timeout.
	ErrBusy = errors.New("runtime: all instances busy")
	// ErrClosed: the module was closed (replaced or removed).
	ErrClosed = errors.New("runtime: module closed")
	// ErrTimeout: the call ran past its deadline and was stopped.
	ErrTimeout = errors.New("runtime: call timed out")
	// ErrTrap: the guest trapped (unreachable, out of bounds, out of memory,
	// exit) during the call.
	ErrTrap = errors.New("runtime: guest trapped")
	// ErrTooLarge: the input or output passed its cap.
	ErrTooLarge = errors.New("runtime: too large")
	// ErrOutputTooLarge: the guest's output passed its cap, the guest's
	// fault rather than the caller's. It wraps ErrTooLarge.
	ErrOutputTooLarge error = &wrapped{"runtime: output too large", ErrTooLarge}
	// ErrNoEntry: the module does not export the entry point.
	ErrNoEntry = errors.New("runtime: entry point not exported")
)

// wrapped is a sentinel that wraps another under its own message.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// TimeoutError is the error of a call stopped at its own deadline
// (CallTimeout). It matches ErrTimeout; Limit says which deadline it was,
// so that a caller with a deadline of its own reports the right one.
type TimeoutError struct {
	Module string
	Entry  Entry
	After  time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("runtime: %s: %s: call timed out: stopped after %s", e.Module, e.Entry, e.After)
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Limit is the deadline the call ran into.
func (e *TimeoutError) Limit() time.Duration { return e.After }
