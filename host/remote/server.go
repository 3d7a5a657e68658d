package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/internal/names"
	"github.com/meshd/meshd/host/mesh"
	"github.com/nats-io/nats.go"
)

// Handler runs one call of a service on this node: req on the service's
// HTTP entry point, filling resp. ctx carries the call's deadline and its
// depth (mesh.DepthFrom). req and resp are valid only until it returns.
// A failure is an error fault.Classify understands.
type Handler func(ctx context.Context, req *abi.Request, resp *abi.Response) error

// Defaults of a ServerConfig.
const (
	// DefaultMaxInFlight bounds the calls one service runs at once for
	// other nodes; a call past it is answered Busy at once.
	DefaultMaxInFlight = 256
	// DefaultMaxTimeout bounds the deadline a call from another node may
	// ask for.
	DefaultMaxTimeout = time.Minute
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Node is this node's name, sent with every answer.
	Node string
	// MaxInFlight bounds the calls of one service running at once
	// (DefaultMaxInFlight when 0).
	MaxInFlight int
	// MaxTimeout bounds a call's deadline (DefaultMaxTimeout when 0).
	MaxTimeout time.Duration
	// Log receives the failures of answering; nil discards them.
	Log *slog.Logger
}

// Server answers calls from other nodes for the services this node
// serves. Each served service is one queue subscription on its Subject,
// whose calls run on a bounded set of long-lived workers.
type Server struct {
	nc    *nats.Conn
	node  string
	max   int
	maxTO time.Duration
	log   *slog.Logger
	idle  time.Duration // how long a worker waits for a call (workerIdle)

	mu     sync.Mutex // guards what follows and every served's fields but sub and name
	subs   map[string]*served
	closed bool
	wg     sync.WaitGroup // workers running
}

// served is one service's subscription and its workers.
//
// A call runs on a worker: a goroutine kept between calls, so that the
// stack a handler grew (a guest call is deep) serves the next call
// instead of being grown again, as a goroutine per call would. A worker
// waits for its next call in idle, most recently used last (the next call
// takes the warmest), and ends after workerIdle without one. There are at
// most max workers: a call that finds none idle and max busy is answered
// Busy at once.
type served struct {
	sub  *nats.Subscription
	name string

	h       Handler
	max     int
	workers int       // started and not ended
	running int       // workers running a call
	idle    []*worker // waiting for a call
	stopped bool      // Stop or Close: workers end after their call
}

// worker is one worker goroutine's mailbox.
type worker struct {
	calls chan call // capacity 1; closed to end an idle worker
}

// call is one call handed to a worker.
type call struct {
	h Handler
	m *nats.Msg
}

// workerIdle is how long a worker waits for a call before it ends.
const workerIdle = 10 * time.Second

// NewServer returns a Server answering on nc.
func NewServer(nc *nats.Conn, cfg ServerConfig) (*Server, error) {
	var errs []error
	if nc == nil {
		errs = append(errs, errors.New("connection: nil"))
	}
	if !validNode(cfg.Node) {
		errs = append(errs, fmt.Errorf("Node: %s is not 1 to %d letters, digits, '.', '_' or '-'", names.Display(cfg.Node), MaxNodeBytes))
	}
	if cfg.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("MaxInFlight: %d is negative", cfg.MaxInFlight))
	}
	if cfg.MaxTimeout < 0 {
		errs = append(errs, fmt.Errorf("MaxTimeout: %v is negative", cfg.MaxTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("remote: server config: %w", err)
	}
	s := &Server{nc: nc, node: cfg.Node, max: cfg.MaxInFlight, maxTO: cfg.MaxTimeout, log: cfg.Log, subs: make(map[string]*served), idle: workerIdle}
	if s.max == 0 {
		s.max = DefaultMaxInFlight
	}
	if s.maxTO == 0 {
		s.maxTO = DefaultMaxTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Serve answers calls of service with h, replacing the handler of a
// service served already (calls running finish on the old one).
func (s *Server) Serve(service string, h Handler) error {
	subj, err := Subject(service)
	if err != nil {
		return err
	}
	if h == nil {
		return errors.New("remote: Serve: nil handler")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if old := s.subs[service]; old != nil {
		old.h = h // read under s.mu by the callback
		s.mu.Unlock()
		return nil
	}
	sv := &served{h: h, max: s.max, name: service}
	// The client's default pending limits (512 Ki messages, 64 MiB) bound
	// what waits for the callback; the callback only hands calls over.
	sub, err := s.nc.QueueSubscribe(subj, subj, func(m *nats.Msg) { s.receive(sv, m) })
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remote: serve %s: %w", service, err)
	}
	sv.sub = sub
	s.subs[service] = sv
	s.mu.Unlock()
	// Return once the server knows of the subscription: a call sent after
	// Serve returns finds this node.
	if err := s.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("remote: serve %s: %w", service, err)
	}
	return nil
}

// flushTimeout bounds the wait for the server to confirm a subscription.
const flushTimeout = 5 * time.Second

// InFlight is how many calls of service from other nodes run now: the
// load this node announces for it, with its local work.
func (s *Server) InFlight(service string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.subs[service]; sv != nil {
		return sv.running
	}
	return 0
}

// Stop stops answering calls of service; calls running finish. Calls
// already on their way to this node get no answer and time out at the
// caller, which is why a node stops answering only after its Directory
// no longer announces the service.
func (s *Server) Stop(service string) error {
	s.mu.Lock()
	sv := s.subs[service]
	delete(s.subs, service)
	if sv != nil {
		s.stopWorkers(sv)
	}
	s.mu.Unlock()
	if sv == nil {
		return nil
	}
	return sv.sub.Unsubscribe()
}

// Close stops answering every service and waits, until ctx ends, for the
// calls running to finish. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = map[string]*served{}
	s.closed = true
	for _, sv := range subs {
		s.stopWorkers(sv)
	}
	s.mu.Unlock()
	var errs []error
	for _, sv := range subs {
		if err := sv.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("remote: close: calls still running: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// stopWorkers ends sv's idle workers; the busy ones end after their call.
// s.mu is held.
func (s *Server) stopWorkers(sv *served) {
	sv.stopped = true
	for i, w := range sv.idle {
		close(w.calls)
		sv.idle[i] = nil
	}
	sv.workers -= len(sv.idle)
	sv.idle = sv.idle[:0]
}

// receive takes one call: it hands it to an idle worker, else to a new
// one, else, with the service's maximum running already, answers Busy.
// It runs on the subscription's goroutine and never blocks.
func (s *Server) receive(sv *served, m *nats.Msg) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fail(m, fault.New(sv.name, fault.Unavailable, errors.New("node closing")))
		return
	}
	c := call{h: sv.h, m: m}
	if n := len(sv.idle); n > 0 {
		w := sv.idle[n-1]
		sv.idle[n-1] = nil
		sv.idle = sv.idle[:n-1]
		sv.running++
		s.mu.Unlock()
		w.calls <- c // an idle worker's mailbox is empty
		return
	}
	if sv.workers >= sv.max {
		s.mu.Unlock()
		s.fail(m, fault.New(sv.name, fault.Busy, fmt.Errorf("%d calls from other nodes running", sv.max)))
		return
	}
	sv.workers++
	sv.running++
	s.wg.Add(1)
	s.mu.Unlock()
	go s.work(sv, &worker{calls: make(chan call, 1)}, c)
}

// work is a worker: it runs c, then the calls handed to it, until it has
// waited workerIdle for one or its service stopped.
func (s *Server) work(sv *served, w *worker, c call) {
	defer s.wg.Done()
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	var buf []byte
	for {
		var answer *nats.Msg
		buf, answer = s.run(sv.name, c.h, c.m, buf)
		c = call{}
		// The worker is idle again before it answers: a caller that sends
		// its next call as soon as it has the answer finds this worker,
		// not none. A call handed to it now waits in its mailbox until the
		// answer, which may still use buf, is sent.
		s.mu.Lock()
		sv.running--
		stopped := sv.stopped
		if stopped {
			sv.workers--
		} else {
			sv.idle = append(sv.idle, w)
		}
		s.mu.Unlock()
		s.answer(sv.name, answer)
		if stopped {
			return
		}
		if idle == nil {
			idle = time.NewTimer(s.idle)
		} else {
			idle.Reset(s.idle)
		}
		var ok bool
		select {
		case c, ok = <-w.calls:
		case <-idle.C:
			s.mu.Lock()
			if i := slices.Index(sv.idle, w); i >= 0 {
				sv.idle = slices.Delete(sv.idle, i, i+1)
				sv.workers--
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			// Taken as the timer fired: its call is on its way, or its
			// service stopped.
			c, ok = <-w.calls
		}
		if !ok {
			return // stopped while idle; stopWorkers counted it out
		}
	}
}

// run runs one call and returns its answer, nil when the call wants none,
// encoding it into buf. It returns buf, grown when the answer needed more
// and was not too large to keep.
func (s *Server) run(service string, h Handler, m *nats.Msg, buf []byte) ([]byte, *nats.Msg) {
	timeout, depth, data, err := parseFrame(m.Data)
	if err != nil {
		kind := fault.Invalid
		if errors.Is(err, errFrameVersion) {
			kind = fault.Unavailable
		}
		return buf, s.failure(m, fault.New(service, kind, err))
	}
	timeout = min(timeout, s.maxTO)
	var req abi.Request
	if err := req.Decode(data); err != nil {
		return buf, s.failure(m, fault.New(service, fault.Invalid, fmt.Errorf("garbled request of %d bytes: %w", len(data), err)))
	}
	ctx, cancel := context.WithTimeout(mesh.WithDepth(context.Background(), depth), timeout)
	defer cancel()
	var resp abi.Response
	if err := callHandler(ctx, h, &req, &resp); err != nil {
		return buf, s.failure(m, fault.Classify(service, err))
	}
	out := resp.Append(buf[:0])
	if cap(out) <= maxPooled {
		buf = out // Publish copies it: the worker's next answer reuses it
	}
	if limit := s.nc.MaxPayload() - headerRoom; int64(len(out)) > limit {
		return buf, s.failure(m, fault.New(service, fault.Failed, fmt.Errorf("answer of %d bytes passes the %d bytes a NATS message may carry", len(out), limit)))
	}
	if m.Reply == "" {
		return buf, nil
	}
	return buf, &nats.Msg{Subject: m.Reply, Data: out}
}

// answer sends an answer run returned, if any.
func (s *Server) answer(service string, a *nats.Msg) {
	if a == nil {
		return
	}
	if err := s.nc.PublishMsg(a); err != nil {
		s.log.Warn("remote: answering a call failed", slog.String("service", service), slog.String("error", err.Error()))
	}
}

// callHandler runs h, turning a panic into a Failed error.
func callHandler(ctx context.Context, h Handler, req *abi.Request, resp *abi.Response) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fault.New("", fault.Failed, fmt.Errorf("remote: handler panicked: %s", bounded(fmt.Sprint(r), MaxErrorBytes)))
		}
	}()
	return h(ctx, req, resp)
}

// fail answers m with fe's kind, message and Retry-After.
func (s *Server) fail(m *nats.Msg, fe *fault.Error) {
	s.answer(fe.Service, s.failure(m, fe))
}

// failure is the answer to m that carries fe's kind, message and
// Retry-After; nil when m wants no answer.
func (s *Server) failure(m *nats.Msg, fe *fault.Error) *nats.Msg {
	if m.Reply == "" {
		return nil
	}
	msg := ""
	if fe.Err != nil {
		msg = fe.Err.Error()
	}
	hdr := nats.Header{
		HeaderFault: []string{fe.Kind.String()},
		HeaderError: []string{bounded(msg, MaxErrorBytes)},
		HeaderNode:  []string{s.node},
	}
	if r := fe.Retry(); r > 0 {
		hdr[HeaderRetry] = []string{millis(r)}
	}
	return &nats.Msg{Subject: m.Reply, Header: hdr}
}
