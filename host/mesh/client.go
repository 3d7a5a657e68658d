package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/internal/names"
	"github.com/meshd/meshd/internal/traceparent"
	"github.com/sony/gobreaker/v2"
)

// Defaults of a Client.
const (
	// DefaultTimeout is a call's timeout when neither the call nor its
	// (caller, callee) pair sets one: well under the default invocation
	// deadline (5 s), so that a caller whose callee hangs still has most of
	// its own time left to answer without it.
	DefaultTimeout = 2 * time.Second
	// DefaultReserve caps the share of the caller's remaining time a call
	// leaves it (a tenth of it, at most DefaultReserve): the call ends
	// before the caller's deadline, and the caller sees the timeout while
	// it can still answer something.
	DefaultReserve = 50 * time.Millisecond
	// DefaultMaxAttempts is how many attempts a retryable call makes at
	// most (the first and two retries).
	DefaultMaxAttempts = 3
	// DefaultBackoff and DefaultMaxBackoff shape the wait before retry n:
	// a uniformly random duration in [0, min(DefaultMaxBackoff,
	// DefaultBackoff × 2^(n-1))) ("full jitter"), Envoy's defaults.
	DefaultBackoff    = 25 * time.Millisecond
	DefaultMaxBackoff = 250 * time.Millisecond
	// DefaultRetryRatio and DefaultMinRetriesPerSec make the retry budget
	// of each callee: retries may add 20% to its calls over BudgetWindow,
	// plus 10 a second whatever the traffic (Linkerd's and Finagle's
	// defaults).
	DefaultRetryRatio       = 0.2
	DefaultMinRetriesPerSec = 10
)

// Bounds.
const (
	// MaxNameLen bounds a callee's name.
	MaxNameLen = 128
	// MaxPairs bounds the (caller, callee) pairs a Client keeps a breaker
	// for. Calls pass a grant check first, so pairs are bounded by the
	// grants; this bounds memory if they are not.
	MaxPairs    = 4096
	maxAttempts = 10
)

// CallOptions are the settings of one call.
type CallOptions struct {
	// Timeout, when positive, replaces the pair's or the Client's. The
	// call's deadline is still never past the caller's.
	Timeout time.Duration
	// Retryable lets a call that is not GET, HEAD, PUT or DELETE be
	// retried: the caller says that running it twice is harmless.
	Retryable bool
	// RequestID is the caller's: every attempt of the call carries it.
	// When empty, req's is kept.
	RequestID string
	// TraceParent is the caller's: every attempt carries a traceparent in
	// the caller's trace with a parent id (span) of its own (a new trace
	// when TraceParent is not valid). When empty, req's traceparent, if
	// valid, is taken as the call's span, kept by the first attempt;
	// retries get spans of their own.
	TraceParent string
}

// Observer receives events for metrics. Its functions are called
// synchronously (BreakerTransition under the breaker's lock): they must be
// quick and must not call the Client.
type Observer struct {
	// BreakerTransition is called on every change of a breaker's state.
	BreakerTransition func(caller, callee string, from, to State)
	// Retry is called when a failed attempt could be retried, with whether
	// the callee's retry budget allowed it.
	Retry func(caller, callee string, granted bool)
}

// Client makes calls between services. It is safe for concurrent use and
// holds no goroutine or resource beyond memory, so it has no Close.
type Client struct {
	resolve  Resolver
	log      *slog.Logger
	obs      Observer
	timeout  time.Duration
	reserve  time.Duration
	attempts int
	backoff  [2]time.Duration // base, max
	ratio    float64
	minRetry int
	now      func() time.Time // of the retry budgets

	mu        sync.RWMutex
	pairs     map[pairKey]*pair
	budgets   map[string]*budget  // by callee
	settings  map[string]Settings // by callee, defaults filled
	timeouts  map[pairKey]time.Duration
	defaults  Settings
	optErrors []error
}

type pairKey struct{ caller, callee string }

// pair is what a Client keeps for one (caller, callee).
type pair struct {
	c              *Client
	caller, callee string // display names
	cb             *gobreaker.TwoStepCircuitBreaker[struct{}]
	budget         *budget
	openFor        time.Duration
	override       atomic.Int64 // timeout, 0 for the Client's
	consumer       []byte       // "service:<caller>", shared read-only
	since          since
	openUntil      atomic.Int64 // while open: when it may half-open (Unix ns); 0 otherwise
	transitions    atomic.Uint64
	lastOpen       atomic.Pointer[fault.Error] // openError's last answer
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets the timeout of calls whose pair has none
// (DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d <= 0 {
			c.optErrors = append(c.optErrors, fmt.Errorf("timeout: %v is not positive", d))
			return
		}
		c.timeout = d
	}
}

// WithPairTimeout sets the timeout of calls from caller to callee.
func WithPairTimeout(caller, callee string, d time.Duration) Option {
	return func(c *Client) {
		if err := c.SetPairTimeout(caller, callee, d); err != nil {
			c.optErrors = append(c.optErrors, err)
		}
	}
}

// WithDeadlineReserve sets the most a call leaves of its caller's remaining
// time (DefaultReserve; a tenth of the remaining time when less). 0 makes a
// call's deadline the caller's own when that is the earlier.
func WithDeadlineReserve(d time.Duration) Option {
	return func(c *Client) {
		if d < 0 {
			c.optErrors = append(c.optErrors, fmt.Errorf("deadline reserve: %v is negative", d))
			return
		}
		c.reserve = d
	}
}

// WithMaxAttempts sets how many attempts a retryable call makes at most,
// 1 to 10 (DefaultMaxAttempts). 1 turns retries off.
func WithMaxAttempts(n int) Option {
	return func(c *Client) {
		if n < 1 || n > maxAttempts {
			c.optErrors = append(c.optErrors, fmt.Errorf("max attempts: %d is not between 1 and %d", n, maxAttempts))
			return
		}
		c.attempts = n
	}
}

// WithBackoff sets the base and the cap of the wait between attempts
// (DefaultBackoff, DefaultMaxBackoff).
func WithBackoff(base, max time.Duration) Option {
	return func(c *Client) {
		if base <= 0 || max < base {
			c.optErrors = append(c.optErrors, fmt.Errorf("backoff: base %v and max %v: want 0 < base <= max", base, max))
			return
		}
		c.backoff = [2]time.Duration{base, max}
	}
}

// WithRetryBudget sets the retry budget every callee gets: retries may add
// ratio (0 to 1) to the calls it received over BudgetWindow, plus minPerSec
// retries a second (DefaultRetryRatio, DefaultMinRetriesPerSec).
func WithRetryBudget(ratio float64, minPerSec int) Option {
	return func(c *Client) {
		if !(ratio >= 0 && ratio <= 1) || minPerSec < 0 {
			c.optErrors = append(c.optErrors, fmt.Errorf("retry budget: ratio %v, min per second %d: want 0 <= ratio <= 1 and min >= 0", ratio, minPerSec))
			return
		}
		c.ratio, c.minRetry = ratio, minPerSec
	}
}

// WithDefaultBreakerSettings sets the breaker thresholds of callees that
// have none of their own (DefaultSettings; zero fields take its values).
func WithDefaultBreakerSettings(s Settings) Option {
	return func(c *Client) {
		if err := s.Validate(); err != nil {
			c.optErrors = append(c.optErrors, fmt.Errorf("default breaker settings: %w", err))
			return
		}
		c.defaults = s.withDefaults()
	}
}

// WithBreakerSettings sets the breaker thresholds in front of callee.
func WithBreakerSettings(callee string, s Settings) Option {
	return func(c *Client) {
		if err := c.SetBreakerSettings(callee, s); err != nil {
			c.optErrors = append(c.optErrors, err)
		}
	}
}

// WithLogger sets the logger of breaker transitions (slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) { c.log = l }
}

// WithObserver sets the functions that receive events for metrics.
func WithObserver(o Observer) Option {
	return func(c *Client) { c.obs = o }
}

// New returns a Client calling the targets resolve returns. It reports
// every invalid option.
func New(resolve Resolver, opts ...Option) (*Client, error) {
	c := &Client{
		resolve:  resolve,
		log:      slog.Default(),
		timeout:  DefaultTimeout,
		reserve:  DefaultReserve,
		attempts: DefaultMaxAttempts,
		backoff:  [2]time.Duration{DefaultBackoff, DefaultMaxBackoff},
		ratio:    DefaultRetryRatio,
		minRetry: DefaultMinRetriesPerSec,
		now:      time.Now,
		pairs:    make(map[pairKey]*pair),
		budgets:  make(map[string]*budget),
		settings: make(map[string]Settings),
		timeouts: make(map[pairKey]time.Duration),
		defaults: DefaultSettings(),
	}
	if resolve == nil {
		c.optErrors = append(c.optErrors, errors.New("resolver: nil"))
	}
	for _, o := range opts {
		o(c)
	}
	if err := errors.Join(c.optErrors...); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	c.optErrors = nil
	return c, nil
}

// SetBreakerSettings sets the breaker thresholds in front of callee (zero
// fields take the Client's defaults). Breakers of callee with other
// settings start over, closed; equal settings change nothing.
func (c *Client) SetBreakerSettings(callee string, s Settings) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("breaker settings of %s: %w", names.Display(callee), err)
	}
	s = s.withDefaultsFrom(c.defaults)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.settings[callee]; ok && old == s {
		return nil
	}
	c.settings[callee] = s
	for k := range c.pairs {
		if k.callee == callee {
			delete(c.pairs, k)
		}
	}
	return nil
}

// SetPairTimeout sets the timeout of calls from caller to callee; 0 removes
// it, so the Client's applies.
func (c *Client) SetPairTimeout(caller, callee string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("timeout of %s→%s: %v is negative", names.Display(caller), names.Display(callee), d)
	}
	k := pairKey{caller, callee}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == 0 {
		delete(c.timeouts, k)
	} else {
		c.timeouts[k] = d
	}
	if p := c.pairs[k]; p != nil {
		p.override.Store(int64(d))
	}
	return nil
}

// Forget drops everything the Client keeps about service as a caller and
// as a callee: breakers, retry budget, settings and timeouts. Call it when
// the service is removed.
func (c *Client) Forget(service string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.pairs {
		if k.caller == service || k.callee == service {
			delete(c.pairs, k)
		}
	}
	for k := range c.timeouts {
		if k.caller == service || k.callee == service {
			delete(c.timeouts, k)
		}
	}
	delete(c.budgets, service)
	delete(c.settings, service)
}

// pair returns the pair of (caller, callee), made on first use.
func (c *Client) pair(caller, callee string) (*pair, error) {
	k := pairKey{caller, callee}
	c.mu.RLock()
	p := c.pairs[k]
	c.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pairs[k]; p != nil {
		return p, nil
	}
	if len(c.pairs) >= MaxPairs {
		return nil, fault.New(names.Display(callee), fault.Unavailable,
			fmt.Errorf("mesh: more than %d caller→callee pairs", MaxPairs))
	}
	s, ok := c.settings[callee]
	if !ok {
		s = c.defaults
	}
	b := c.budgets[callee]
	if b == nil {
		b = newBudget(c.ratio, c.minRetry)
		c.budgets[callee] = b
	}
	p = &pair{
		c:        c,
		caller:   names.Display(caller),
		callee:   names.Display(callee),
		budget:   b,
		openFor:  s.OpenFor,
		consumer: []byte("service:" + caller),
	}
	p.override.Store(int64(c.timeouts[k]))
	p.since.set(time.Now())
	p.cb = newBreaker(s, p.changed)
	c.pairs[k] = p
	return p, nil
}

// changed is the breaker's OnStateChange (under its lock).
func (p *pair) changed(from, to gobreaker.State) {
	now := time.Now()
	p.since.set(now)
	if to == gobreaker.StateOpen {
		p.openUntil.Store(now.Add(p.openFor).UnixNano())
	} else {
		p.openUntil.Store(0)
	}
	p.transitions.Add(1)
	f, t := fromGo(from), fromGo(to)
	level := slog.LevelInfo
	if t == Open {
		level = slog.LevelWarn
	}
	p.c.log.LogAttrs(context.Background(), level, "circuit breaker "+t.String(),
		slog.String("caller", p.caller), slog.String("callee", p.callee),
		slog.String("from", f.String()), slog.String("to", t.String()))
	if fn := p.c.obs.BreakerTransition; fn != nil {
		fn(p.caller, p.callee, f, t)
	}
}

func (p *pair) timeout() time.Duration {
	if d := p.override.Load(); d > 0 {
		return time.Duration(d)
	}
	return p.c.timeout
}

// openError is the error of a call the breaker refused: the same
// *fault.Error as the last one while its state and Retry-After are, which
// callers must therefore not modify.
func (p *pair) openError(err error, now time.Time) *fault.Error {
	st := Open
	if errors.Is(err, gobreaker.ErrTooManyRequests) {
		st = HalfOpen
	}
	retry := time.Second
	var until time.Time
	if st == Open {
		until = p.since.get().Add(p.openFor)
		if r := until.Sub(now); r > 0 {
			retry = r.Round(time.Second)
			if retry < time.Second {
				retry = time.Second
			}
		}
	}
	// The same error while it would read the same, so that a caller
	// refused again and again allocates nothing and can tell a repeat by
	// the pointer (the call host function then reuses its message).
	if last := p.lastOpen.Load(); last != nil && last.RetryAfter == retry {
		if oe := last.Err.(*OpenError); oe.State == st && oe.Until.Equal(until) {
			return last
		}
	}
	e := &fault.Error{
		Service:    p.callee,
		Kind:       fault.CircuitOpen,
		Err:        &OpenError{Caller: p.caller, Callee: p.callee, State: st, Until: until},
		RetryAfter: retry,
	}
	p.lastOpen.Store(e)
	return e
}

// Call calls callee's HTTP entry point with req on behalf of caller and
// fills resp. It sets req's Consumer ("service:<caller>"), RequestID and
// TraceParent (see CallOptions), and hands its targets a context carrying
// the call's deadline and the depth of the callee (DepthFrom(ctx) + 1).
//
// It returns nil when an attempt produced a response, whatever its status
// (see the package doc), and a *fault.Error otherwise: Invalid past
// MaxDepth, Unavailable when callee has no target, CircuitOpen when its
// breaker refused the call (the same error while the breaker stays as it
// is: do not modify it), Timeout at the call's deadline, or the kind of
// the last attempt's failure.
func (c *Client) Call(ctx context.Context, caller, callee string, req *abi.Request, resp *abi.Response, o CallOptions) error {
	depth := DepthFrom(ctx)
	if depth >= MaxDepth {
		return fault.New(names.Display(callee), fault.Invalid,
			fmt.Errorf("mesh: a call from %s would run %s at depth %d, past the limit of %d (a chain of calls too long, or a cycle)",
				names.Display(caller), names.Display(callee), depth+1, MaxDepth))
	}
	if callee == "" || len(callee) > MaxNameLen {
		return fault.New(names.Display(callee), fault.Invalid,
			fmt.Errorf("mesh: a service name is 1 to %d bytes, not %d", MaxNameLen, len(callee)))
	}
	p, err := c.pair(caller, callee)
	if err != nil {
		return err
	}
	now := time.Now()
	if u := p.openUntil.Load(); u != 0 && now.UnixNano() < u {
		// Open: fail fast, reading neither the breaker (its lock, its own
		// clock) nor anything else. Allow below catches a breaker that
		// opens meanwhile, half-open's probe limit, and moves an open one
		// whose time is up to half-open.
		return p.openError(gobreaker.ErrOpenState, now)
	}

	// The deadline: the call's own timeout, or the caller's deadline less
	// a reserve when that is earlier.
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = p.timeout()
	}
	dl := now.Add(timeout)
	bound := timeout // what set dl; 0 for the caller's deadline
	if cd, ok := ctx.Deadline(); ok {
		cd = cd.Add(-min(cd.Sub(now)/10, c.reserve))
		if cd.Before(dl) {
			dl, bound = cd, 0
		}
	}
	if err := ctx.Err(); err != nil {
		return p.failure(ctx, err, bound)
	}
	if !dl.After(now) {
		return fault.New(p.callee, fault.Timeout,
			fmt.Errorf("mesh: call %s→%s: no time left before the caller's deadline", p.caller, p.callee))
	}
	cc := newCallContext(ctx, dl, depth+1) // callctx.go
	defer cc.release()
	ctx = cc

	req.Consumer = p.consumer
	if o.RequestID != "" {
		req.RequestID = []byte(o.RequestID)
	}
	var tp []byte
	ownTP := true // tp is not the caller's: a retry may give it a span of its own in place
	switch {
	case o.TraceParent != "":
		tp = appendChild(make([]byte, 0, traceparent.Len), o.TraceParent)
	case len(req.TraceParent) == traceparent.Len && traceparent.Valid(unsafe.String(&req.TraceParent[0], traceparent.Len)):
		// The caller made the call's span already: the first attempt
		// keeps it, retries get their own (in a copy).
		tp, ownTP = req.TraceParent, false
	default:
		tp = traceparent.Append(make([]byte, 0, traceparent.Len))
	}
	req.TraceParent = tp
	retryable := o.Retryable || abi.IdempotentMethod(req.Method)

	p.budget.call(c.now())
	var last *fault.Error // the last attempt's failure; nil when it answered
	for attempt := 1; ; attempt++ {
		targets := c.resolve(callee)
		if len(targets) == 0 {
			if attempt > 1 {
				return errOrNil(last)
			}
			return fault.New(p.callee, fault.Unavailable,
				fmt.Errorf("mesh: call %s→%s: no instance of %s is up", p.caller, p.callee, p.callee))
		}
		done, err := p.cb.Allow()
		if err != nil {
			if attempt > 1 {
				return errOrNil(last)
			}
			return p.openError(err, time.Now())
		}
		if attempt > 1 {
			if !ownTP {
				tp, ownTP = append(make([]byte, 0, traceparent.Len), tp...), true
				req.TraceParent = tp
			}
			newSpan(tp)
		}
		*resp = abi.Response{}
		err = pick(targets).Invoke(ctx, req, resp)

		// Judge the attempt (see the package doc's table).
		var counted error // for the breaker
		again := false
		last = nil
		switch {
		case err == nil && resp.Status < 500:
		case err == nil:
			counted, again = errFailure, true
		case ctx.Err() != nil:
			last = p.failure(ctx, err, bound)
			counted = errExcluded
			if last.Kind == fault.Timeout {
				counted = errFailure
			}
		default:
			last = p.wrap(err)
			switch last.Kind {
			case fault.Busy, fault.Unavailable, fault.Timeout, fault.Failed:
				counted, again = errFailure, true
			case fault.StoreRefused, fault.Partial:
				// Failures of the callee, but not retried: a store refusing
				// writes answers the same again, and a partly applied call
				// would make its writes twice.
				counted = errFailure
			default:
				// The caller's own faults (denied, invalid, not found), and
				// a request the callee's node shed (overloaded: nothing was
				// attempted, and another try now would meet the same lag):
				// no failure of the callee, not retried.
				counted = errExcluded
			}
		}
		done(counted)
		if !again || !retryable || attempt >= c.attempts {
			return errOrNil(last)
		}
		granted := p.budget.retry(c.now())
		if fn := c.obs.Retry; fn != nil {
			fn(p.caller, p.callee, granted)
		}
		if !granted || !c.wait(ctx, attempt) {
			return errOrNil(last)
		}
	}
}

// errOrNil returns e as an error, nil when e is nil (not a typed nil).
func errOrNil(e *fault.Error) error {
	if e == nil {
		return nil
	}
	return e
}

// wrap classifies a target's error as a failure of the callee.
func (p *pair) wrap(err error) *fault.Error {
	fe := fault.Classify(p.callee, err)
	cause := err
	if top, ok := err.(*fault.Error); ok && (top.Service == "" || top.Service == p.callee) && top.Err != nil {
		cause = top.Err // not "service user: busy: service user: busy: ..."
	}
	return &fault.Error{Service: p.callee, Kind: fe.Kind, Err: cause, RetryAfter: fe.RetryAfter}
}

// failure is the error of a call whose context ended: Timeout at its
// deadline (bound is the call's timeout when that set the deadline, 0 when
// the caller's deadline did), else the caller's cancellation.
func (p *pair) failure(ctx context.Context, err error, bound time.Duration) *fault.Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		which := "its caller's deadline"
		if bound > 0 {
			which = "its timeout of " + bound.String()
		}
		return &fault.Error{Service: p.callee, Kind: fault.Timeout,
			Err: fmt.Errorf("mesh: call %s→%s ran past %s: %w", p.caller, p.callee, which, err)}
	}
	return &fault.Error{Service: p.callee, Kind: fault.Unavailable,
		Err: fmt.Errorf("mesh: call %s→%s: the caller went away: %w", p.caller, p.callee, err)}
}

// wait waits before retry n+1 (full jitter), and reports false without
// waiting when ctx's deadline would come first, or when ctx ends meanwhile.
func (c *Client) wait(ctx context.Context, n int) bool {
	ceil := c.backoff[1]
	if n-1 < 30 {
		ceil = min(ceil, c.backoff[0]<<(n-1))
	}
	d := rand.N(ceil)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return false
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Snapshot returns every breaker, by caller then callee.
func (c *Client) Snapshot() []BreakerInfo {
	c.mu.RLock()
	ps := make([]*pair, 0, len(c.pairs))
	for _, p := range c.pairs {
		ps = append(ps, p)
	}
	c.mu.RUnlock()
	out := make([]BreakerInfo, len(ps))
	for i, p := range ps {
		st := fromGo(p.cb.State()) // may move open to half-open
		n := p.cb.Counts()
		out[i] = BreakerInfo{
			Caller: p.caller,
			Callee: p.callee,
			State:  st,
			Counts: Counts{
				Requests:             n.Requests,
				Successes:            n.TotalSuccesses,
				Failures:             n.TotalFailures,
				Excluded:             n.TotalExclusions,
				ConsecutiveSuccesses: n.ConsecutiveSuccesses,
				ConsecutiveFailures:  n.ConsecutiveFailures,
			},
			Since:       p.since.get(),
			Transitions: p.transitions.Load(),
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Caller != out[j].Caller {
			return out[i].Caller < out[j].Caller
		}
		return out[i].Callee < out[j].Callee
	})
	return out
}
