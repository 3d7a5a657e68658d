package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/runtime"
)

func TestKinds(t *testing.T) {
	tests := []struct {
		kind   fault.Kind
		name   string
		status int
		code   abi.Code
		retry  time.Duration
	}{
		{fault.Failed, "failed", 500, abi.CodeInternal, 0},
		{fault.Busy, "busy", 503, abi.CodeUnavailable, time.Second},
		{fault.Timeout, "timeout", 504, abi.CodeTimeout, 0},
		{fault.TooLarge, "too large", 413, abi.CodeTooLarge, 0},
		{fault.Unavailable, "unavailable", 503, abi.CodeUnavailable, time.Second},
		{fault.StoreRefused, "store refuses writes", 503, abi.CodeUnavailable, fault.StoreRetryAfter},
		{fault.Denied, "denied", 403, abi.CodeDenied, 0},
		{fault.NotFound, "not found", 404, abi.CodeNotFound, 0},
		{fault.Invalid, "invalid", 400, abi.CodeInvalid, 0},
		{fault.CircuitOpen, "circuit open", 503, abi.CodeUnavailable, time.Second},
		{fault.Conflict, "conflict", 409, abi.CodeUnavailable, 0},
		{fault.Kind(200), "kind 200", 500, abi.CodeInternal, 0}, // unknown: Failed's answers
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.name {
				t.Errorf("String %q, want %q", got, tt.name)
			}
			if got := tt.kind.Status(); got != tt.status {
				t.Errorf("Status %d, want %d", got, tt.status)
			}
			if got := tt.kind.Code(); got != tt.code {
				t.Errorf("Code %s, want %s", got, tt.code)
			}
			if got := tt.kind.RetryAfter(); got != tt.retry {
				t.Errorf("RetryAfter %s, want %s", got, tt.retry)
			}
		})
	}
	if fault.StoreRetryAfter <= fault.Busy.RetryAfter() {
		t.Errorf("a full disk's Retry-After (%s) should be longer than a busy service's (%s)", fault.StoreRetryAfter, fault.Busy.RetryAfter())
	}
}

func TestClassify(t *testing.T) {
	timeout := &runtime.TimeoutError{Module: "orders", Entry: runtime.EntryHTTP, After: 5 * time.Second}
	tests := []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"busy", fmt.Errorf("orders: 4 instances busy for 1s: %w", runtime.ErrBusy), fault.Busy},
		{"timeout sentinel", fmt.Errorf("instantiating: %w", runtime.ErrTimeout), fault.Timeout},
		{"timeout error", fmt.Errorf("orders: %w", timeout), fault.Timeout},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), fault.Timeout},
		{"output too large", fmt.Errorf("orders: http: output passes the cap: %w", runtime.ErrOutputTooLarge), fault.Failed},
		{"input too large", fmt.Errorf("orders: input passes the cap: %w", runtime.ErrTooLarge), fault.TooLarge},
		{"closed", fmt.Errorf("orders: %w", runtime.ErrClosed), fault.Unavailable},
		{"store refuses", fmt.Errorf("applying 2 kv writes: %w", kv.ErrWritesRefused), fault.StoreRefused},
		{"trap", fmt.Errorf("orders: http: %w: unreachable", runtime.ErrTrap), fault.Failed},
		{"other", errors.New("service orders failed the request (internal error)"), fault.Failed},
		{"an error wrapped", fmt.Errorf("service orders is not loaded: %w", &fault.Error{Kind: fault.Unavailable}), fault.Unavailable},
		{"an error beside a runtime error", fmt.Errorf("service orders: %w: %w", runtime.ErrTooLarge, &fault.Error{Kind: fault.Busy}), fault.Busy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := fault.Classify("orders", tt.err)
			if fe == nil || fe.Kind != tt.want {
				t.Fatalf("Classify(%v) = %v, want kind %s", tt.err, fe, tt.want)
			}
			if fe.Service != "orders" || !errors.Is(fe, tt.err) {
				t.Fatalf("Classify(%v) = %+v: want the service and the cause kept", tt.err, fe)
			}
		})
	}
	if fe := fault.Classify("orders", nil); fe != nil {
		t.Fatalf("Classify(nil) = %v, want nil", fe)
	}
}

// TestClassifyKeepsTheLimit: the gateway names the deadline a call ran
// into from runtime.TimeoutError's Limit; classifying must not hide it.
func TestClassifyKeepsTheLimit(t *testing.T) {
	err := fmt.Errorf("orders: %w", &runtime.TimeoutError{Module: "orders", Entry: runtime.EntryHTTP, After: 5 * time.Second})
	fe := fault.Classify("orders", err)
	var lim interface{ Limit() time.Duration }
	if !errors.As(fe, &lim) || lim.Limit() != 5*time.Second {
		t.Fatalf("Limit not reachable through %v", fe)
	}
	if !errors.Is(fe, runtime.ErrTimeout) {
		t.Fatalf("errors.Is(%v, runtime.ErrTimeout) is false", fe)
	}
}

// TestClassifyKeepsAnError: an error that carries a *Error keeps its kind
// and retry, even where its cause would classify otherwise.
func TestClassifyKeepsAnError(t *testing.T) {
	inner := &fault.Error{Service: "payment", Kind: fault.CircuitOpen, Err: runtime.ErrBusy, RetryAfter: 7 * time.Second}
	fe := fault.Classify("orders", fmt.Errorf("calling payment: %w", inner))
	if fe != inner {
		t.Fatalf("Classify = %+v, want the wrapped *Error", fe)
	}
	if fe.Retry() != 7*time.Second || fe.Status() != http.StatusServiceUnavailable {
		t.Fatalf("Retry %s, Status %d", fe.Retry(), fe.Status())
	}
	if fe.Code() != abi.CodeUnavailable {
		t.Fatalf("Code %s", fe.Code())
	}
	var coder interface{ Code() abi.Code } // host.Coder, read by the call host function
	if !errors.As(fmt.Errorf("calling payment: %w", inner), &coder) || coder.Code() != abi.CodeUnavailable {
		t.Fatal("a wrapped *Error does not give its ABI code")
	}

	// One without a service takes the caller's, and keeps the whole chain.
	sentinel := &fault.Error{Kind: fault.Busy, Err: errors.New("gateway: service busy")}
	err := fmt.Errorf("pool: %w", sentinel)
	fe = fault.Classify("orders", err)
	if fe == sentinel || fe.Service != "orders" || fe.Kind != fault.Busy || !errors.Is(fe, err) || sentinel.Service != "" {
		t.Fatalf("Classify = %+v (sentinel %+v)", fe, sentinel)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  *fault.Error
		want string
	}{
		{&fault.Error{Service: "orders", Kind: fault.Busy, Err: errors.New("4 instances busy")}, "service orders: busy: 4 instances busy"},
		{&fault.Error{Kind: fault.NotFound}, "not found"},
		{fault.New("orders", fault.Timeout, nil), "service orders: timeout"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
	if (&fault.Error{Kind: fault.Busy}).Retry() != time.Second {
		t.Error("a Busy error without RetryAfter takes the kind's")
	}
}
