package mesh

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// State is a circuit breaker's state. Its value is the value of the
// meshd_breaker_state gauge.
type State uint8

// States of a circuit breaker.
const (
	// Closed: calls go through; failures are counted.
	Closed State = 0
	// HalfOpen: after OpenFor, a few probe calls go through; Probes
	// successes in a row close the breaker, one failure opens it again.
	HalfOpen State = 1
	// Open: calls fail fast with fault.CircuitOpen, without reaching the
	// callee, for OpenFor.
	Open State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("state %d", s)
}

// MarshalText makes a State its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func fromGo(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return HalfOpen
	case gobreaker.StateOpen:
		return Open
	}
	return Closed
}

// Settings are the thresholds of the circuit breakers in front of one
// callee (one breaker per caller of it). A zero field takes the default of
// DefaultSettings.
type Settings struct {
	// ConsecutiveFailures trips the breaker when that many attempts in a
	// row failed.
	ConsecutiveFailures uint32 `json:"consecutive_failures,omitempty" toml:"consecutive_failures"`
	// FailureRatio trips the breaker when at least that share of the
	// attempts counted in Window failed, once MinRequests were counted.
	FailureRatio float64 `json:"failure_ratio,omitempty" toml:"failure_ratio"`
	// MinRequests is how many attempts Window must count before
	// FailureRatio applies.
	MinRequests uint32 `json:"min_requests,omitempty" toml:"min_requests"`
	// Window is the rolling window FailureRatio is measured over, in ten
	// buckets.
	Window time.Duration `json:"window,omitempty" toml:"window"`
	// OpenFor is how long an open breaker fails calls fast before letting
	// probes through.
	OpenFor time.Duration `json:"open_for,omitempty" toml:"open_for"`
	// Probes is how many calls a half-open breaker lets through at once,
	// and how many successes in a row close it.
	Probes uint32 `json:"probes,omitempty" toml:"probes"`
}

// DefaultSettings returns the default thresholds:
//   - ConsecutiveFailures 5: a callee that failed five attempts in a row
//     (at most two calls' worth with retries) is down, not unlucky; fewer
//     would trip on one unlucky call and its retries.
//   - FailureRatio 0.5 over a Window of 10 s with MinRequests 20: a callee
//     failing half its calls is failing even when successes break the
//     runs; 20 calls keep a quiet callee from tripping on two failures
//     out of three, which ConsecutiveFailures covers.
//   - OpenFor 5 s: long enough to take the load off a callee that is
//     restarting or overloaded, short enough that callers get it back
//     soon after (a reload takes tens of milliseconds).
//   - Probes 3: one success is weak evidence; three in a row, each able to
//     reopen the breaker, risk little load.
func DefaultSettings() Settings {
	return Settings{
		ConsecutiveFailures: 5,
		FailureRatio:        0.5,
		MinRequests:         20,
		Window:              10 * time.Second,
		OpenFor:             5 * time.Second,
		Probes:              3,
	}
}

// Limits on Settings.
const (
	maxConsecutive = 10_000
	maxProbes      = 100
	minWindow      = 100 * time.Millisecond
	maxWindow      = 10 * time.Minute
	minOpenFor     = 10 * time.Millisecond
	maxOpenFor     = 10 * time.Minute
)

// Validate reports every problem of s, each with its field name.
func (s Settings) Validate() error {
	var errs []error
	if s.ConsecutiveFailures > maxConsecutive {
		errs = append(errs, fmt.Errorf("consecutive_failures: %d is more than %d", s.ConsecutiveFailures, maxConsecutive))
	}
	if !(s.FailureRatio >= 0 && s.FailureRatio <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("failure_ratio: %v is not between 0 and 1", s.FailureRatio))
	}
	if s.MinRequests > maxConsecutive {
		errs = append(errs, fmt.Errorf("min_requests: %d is more than %d", s.MinRequests, maxConsecutive))
	}
	if s.Window != 0 && (s.Window < minWindow || s.Window > maxWindow) {
		errs = append(errs, fmt.Errorf("window: %v is not between %v and %v", s.Window, minWindow, maxWindow))
	}
	if s.OpenFor != 0 && (s.OpenFor < minOpenFor || s.OpenFor > maxOpenFor) {
		errs = append(errs, fmt.Errorf("open_for: %v is not between %v and %v", s.OpenFor, minOpenFor, maxOpenFor))
	}
	if s.Probes > maxProbes {
		errs = append(errs, fmt.Errorf("probes: %d is more than %d", s.Probes, maxProbes))
	}
	return errors.Join(errs...)
}

// withDefaults fills s's zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings { return s.withDefaultsFrom(DefaultSettings()) }

// Counts are a breaker's counts in its current state (for Closed, over its
// rolling window).
type Counts struct {
	Requests             uint32 `json:"requests"`
	Successes            uint32 `json:"successes"`
	Failures             uint32 `json:"failures"`
	Excluded             uint32 `json:"excluded"`
	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
}

// BreakerInfo is one breaker as Snapshot shows it.
type BreakerInfo struct {
	Caller      string    `json:"caller"`
	Callee      string    `json:"callee"`
	State       State     `json:"state"`
	Counts      Counts    `json:"counts"`
	Since       time.Time `json:"since"` // when State began (half-open: when first seen)
	Transitions uint64    `json:"transitions"`
}

// Outcomes of an attempt for the breaker (see the table in the package doc).
var (
	errFailure  = errors.New("mesh: attempt failed")
	errExcluded = errors.New("mesh: attempt not counted")
)

// newBreaker makes the breaker of p with s (defaults filled). onChange is
// called under the breaker's lock: it must not call into the breaker.
func newBreaker(s Settings, onChange func(from, to gobreaker.State)) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests:  s.Probes,
		Interval:     s.Window,
		BucketPeriod: s.Window / 10,
		Timeout:      s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= s.ConsecutiveFailures {
				return true
			}
			n := c.TotalSuccesses + c.TotalFailures
			return n >= s.MinRequests && n > 0 && float64(c.TotalFailures) >= s.FailureRatio*float64(n)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) { onChange(from, to) },
		IsExcluded:    func(err error) bool { return err == errExcluded },
	})
}

// OpenError is the cause of a call failed fast by an open or half-open
// breaker: "circuit order→user open".
type OpenError struct {
	Caller, Callee string // bounded and escaped for display
	State          State
	// Until is when an open breaker lets a call through again (a
	// half-open probe); zero for a half-open one.
	Until time.Time
}

// OpenUntil is Until: when an open breaker lets a call through again,
// zero for a half-open one (the call host function tells the guest).
func (e *OpenError) OpenUntil() time.Time { return e.Until }

func (e *OpenError) Error() string {
	s := "circuit " + e.Caller + "→" + e.Callee + " " + e.State.String()
	if e.State == HalfOpen {
		s += ", its probes in flight"
	}
	return s
}

// since is an atomic time.
type since struct{ ns atomic.Int64 }

func (s *since) set(t time.Time) { s.ns.Store(t.UnixNano()) }
func (s *since) get() time.Time  { return time.Unix(0, s.ns.Load()) }

// withDefaultsFrom fills s's zero fields from d.
func (s Settings) withDefaultsFrom(d Settings) Settings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if s.FailureRatio == 0 {
		s.FailureRatio = d.FailureRatio
	}
	if s.MinRequests == 0 {
		s.MinRequests = d.MinRequests
	}
	if s.Window == 0 {
		s.Window = d.Window
	}
	if s.OpenFor == 0 {
		s.OpenFor = d.OpenFor
	}
	if s.Probes == 0 {
		s.Probes = d.Probes
	}
	return s
}
