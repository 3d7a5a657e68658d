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
// instead of being grown again, as a goroutine per call would. The
// subscription is synchronous: up to readers workers wait in NextMsg, and
// the connection's reader hands a call straight to one of them, which
// runs it. (An asynchronous subscription's goroutine handing each call on
// to a worker cost a goroutine wake-up more per call.) A worker that
// takes a call and leaves no reader waiting makes another reader first:
// an idle worker (most recently used first, the warmest), else a new one.
// A worker that ends a call while readers wait already goes idle, and
// ends after workerIdle without being made a reader again; a reader ends
// after workerIdle without a call, but the last. There are at
// most max calls running: a reader that takes a call past them answers
// Busy at once.
type served struct {
	sub  *nats.Subscription // synchronous, queue group
	name string

	h       Handler
	max     int
	workers int       // started and not ended
	running int       // workers running a call
	reading int       // workers waiting in NextMsg, or made readers and on their way
	idle    []*worker // waiting to be made readers again
	stopped bool      // Stop or Close: workers end after their call
}

// readers is how many workers wait for a service's next call at most.
// Two: a worker that takes a call leaves the other reading, and rejoins
// once its call is done, with no wake-up of an idle worker per call.
const readers = 2

// worker is one worker goroutine's mailbox.
type worker struct {
	wake chan struct{} // capacity 1: a send makes it a reader; closed to end it
}

// workerIdle is how long a worker waits to be made a reader before it
// ends, and how long a reader waits in NextMsg before it looks again.
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
	// The client's default pending limits (64 Ki messages for a
	// synchronous subscription) bound the calls waiting for a reader.
	sub, err := s.nc.QueueSubscribeSync(subj, subj)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remote: serve %s: %w", service, err)
	}
	sv.sub = sub
	s.subs[service] = sv
	s.addReader(sv)
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

// stopWorkers ends sv's idle workers; the busy ones end after their
// call, the readers once its subscription is gone (answering the calls
// still waiting for a reader as Unavailable). s.mu is held.
func (s *Server) stopWorkers(sv *served) {
	sv.stopped = true
	for i, w := range sv.idle {
		close(w.wake)
		sv.idle[i] = nil
	}
	sv.workers -= len(sv.idle)
	sv.idle = sv.idle[:0]
}

// addReader makes one more worker wait for sv's calls: the warmest idle
// one, else a new one while there are fewer than max plus readers. s.mu
// is held.
func (s *Server) addReader(sv *served) {
	if n := len(sv.idle); n > 0 {
		w := sv.idle[n-1]
		sv.idle[n-1] = nil
		sv.idle = sv.idle[:n-1]
		sv.reading++
		w.wake <- struct{}{} // an idle worker's mailbox is empty
		return
	}
	if sv.workers >= sv.max+readers {
		return
	}
	sv.workers++
	sv.reading++
	s.wg.Add(1)
	go s.work(sv, &worker{wake: make(chan struct{}, 1)})
}

// work is a worker: a reader taking sv's calls and running them, idle in
// between when enough others read, until it has been idle workerIdle or
// its service stopped.
func (s *Server) work(sv *served, w *worker) {
	defer s.wg.Done()
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	var buf []byte
	for {
		m, h, ok := s.next(sv)
		if !ok {
			return
		}
		var answer *nats.Msg
		buf, answer = s.run(sv.name, h, m, buf)
		// The worker reads or is idle again before it answers: a caller
		// that sends its next call as soon as it has the answer finds a
		// reader. A worker idle now and made a reader meanwhile finds the
		// wake-up in its mailbox after the answer, which may still use
		// buf, is sent.
		s.mu.Lock()
		sv.running--
		stopped := sv.stopped
		read := !stopped && sv.reading < readers
		switch {
		case stopped:
			sv.workers--
		case read:
			sv.reading++
		default:
			sv.idle = append(sv.idle, w)
		}
		s.mu.Unlock()
		s.answer(sv.name, answer)
		if stopped || !read && !s.park(sv, w, &idle) {
			return
		}
	}
}

// next is a reader's wait for sv's next call: it returns the call to run
// and its handler, counted as running (having made another reader when it
// left none), and answers the calls it cannot run (Busy past sv.max,
// Unavailable once stopped). ok is false when the worker is to end: its
// subscription is gone, or it waited workerIdle and another reader waits.
func (s *Server) next(sv *served) (m *nats.Msg, h Handler, ok bool) {
	for {
		m, err := sv.sub.NextMsg(s.idle)
		s.mu.Lock()
		switch {
		case errors.Is(err, nats.ErrTimeout):
			if sv.reading > 1 { // one reader waits on
				sv.reading--
				sv.workers--
				s.mu.Unlock()
				return nil, nil, false
			}
			s.mu.Unlock()
			continue
		case errors.Is(err, nats.ErrSlowConsumer) && !sv.stopped:
			s.mu.Unlock()
			s.log.Warn("remote: calls were dropped, more waited for a reader than the subscription holds", slog.String("service", sv.name))
			continue
		case err != nil: // the subscription is gone
			sv.reading--
			sv.workers--
			s.mu.Unlock()
			return nil, nil, false
		case sv.stopped:
			s.mu.Unlock()
			s.fail(m, fault.New(sv.name, fault.Unavailable, errors.New("service stopped on this node")))
			continue
		case sv.running >= sv.max:
			running := sv.running
			s.mu.Unlock()
			s.fail(m, fault.New(sv.name, fault.Busy, fmt.Errorf("%d calls from other nodes running", running)))
			continue
		}
		sv.reading--
		sv.running++
		h := sv.h
		if sv.reading == 0 {
			s.addReader(sv)
		}
		s.mu.Unlock()
		return m, h, true
	}
}

// park waits, idle, until w is made a reader again (true), or for
// workerIdle, after which it ends (false; so does a stopped service's).
// *idle is the worker's timer, made on first use.
func (s *Server) park(sv *served, w *worker, idle **time.Timer) bool {
	if *idle == nil {
		*idle = time.NewTimer(s.idle)
	} else {
		(*idle).Reset(s.idle)
	}
	select {
	case _, ok := <-w.wake:
		return ok // closed: stopped while idle, and stopWorkers counted it out
	case <-(*idle).C:
	}
	s.mu.Lock()
	if i := slices.Index(sv.idle, w); i >= 0 {
		sv.idle = slices.Delete(sv.idle, i, i+1)
		sv.workers--
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()
	// Made a reader as the timer fired, or its service stopped.
	_, ok := <-w.wake
	return ok
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
