package bus

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/internal/traceparent"
)

// Handler handles one delivered event. Returning nil acks it; an error (or
// a panic) makes it redelivered, then dead-lettered after the last attempt,
// except a *Busy error. ctx ends after Config.HandlerTimeout.
type Handler func(ctx context.Context, ev Event) error

// Busy is the error of a handler that did not handle the event, and did
// not fail: it may not handle it yet (another node of a cluster handles an
// event of the same serial key). The event is redelivered after Delay, and
// this delivery is not counted as an attempt by this node (as a delivery
// the store refused: see Subscription.refused).
type Busy struct {
	Delay time.Duration
	Err   error
}

func (e *Busy) Error() string { return "busy: " + e.Err.Error() }
func (e *Busy) Unwrap() error { return e.Err }

// Subscription delivers one event type to one service's handler.
type Subscription struct {
	b       *Bus
	service string
	typ     string
	h       Handler
	max     int // attempts before dead-lettering
	cons    jetstream.Consumer
	name    string // of cons: ConsumerName's, or a replacement's (see ensureConsumer)

	startMu sync.Mutex // orders Start against Stop
	started bool       // set by Start

	ctx    context.Context // parent of handler contexts
	cancel context.CancelFunc

	// The puller asks the server for as many events as there are free
	// workers (one token each in free) and hands them over on work.
	free        chan struct{}
	work        chan jetstream.Msg
	pulls       context.Context // the open pull requests' parent; cancelled by Stop
	cancelPulls context.CancelFunc

	stopping chan struct{}
	wg       sync.WaitGroup // the puller and the workers
	stopOnce sync.Once

	// refused counts, per stream sequence, the deliveries whose handler
	// failed only because the store refused writes (a full disk): they are
	// not attempts, so an event is not dead-lettered for the store's fault.
	// Kept in memory only (a restart forgets it; JetStream's count stays).
	refusedMu sync.Mutex
	refused   map[uint64]int
}

// maxRefusedTracked bounds Subscription.refused.
const maxRefusedTracked = 10000

// storeRetryDelay is when a delivery refused by the store is tried again
// (a variable for tests).
var storeRetryDelay = 5 * time.Second

// ConsumerName returns the durable consumer name of (service, typ):
// "svc_<service>_<type with '.' as '_'>_<hash>". The hash of the exact pair
// keeps names unique where the readable part is ambiguous (service "a_b"
// with type "c" against service "a" with type "b_c", or "x.y" against
// "x_y").
func ConsumerName(service, typ string) string {
	sum := sha256.Sum256([]byte(service + "\x00" + typ))
	return "svc_" + service + "_" + strings.ReplaceAll(typ, ".", "_") + "_" + hex.EncodeToString(sum[:5])
}

// Subscribe starts delivering events of type typ to h on behalf of service.
// The durable consumer survives restarts: a new Subscribe for the same
// (service, typ) resumes where the last one left off, and the first one
// starts at the oldest stored event. A durable whose stored state the
// server cannot open is replaced by a new one, which starts at the oldest
// stored event too (see ensureConsumer and Hooks.ConsumerReplaced). ctx
// bounds the setup only; the subscription runs until Stop or Bus.Close.
// Options: WithMaxDeliver, Deferred.
func (b *Bus) Subscribe(ctx context.Context, service, typ string, h Handler, opts ...SubscribeOption) (*Subscription, error) {
	var opt subscribeOptions
	for _, o := range opts {
		o(&opt)
	}
	return b.subscribe(ctx, service, typ, h, opt)
}

// SubscribeOption tunes one subscription.
type SubscribeOption func(*subscribeOptions)

type subscribeOptions struct {
	maxDeliver int
	deferred   bool
}

// WithMaxDeliver overrides Config.MaxDeliver for this subscription when
// positive (a negative n is an error from Subscribe).
func WithMaxDeliver(n int) SubscribeOption {
	return func(o *subscribeOptions) { o.maxDeliver = n }
}

// Deferred makes the durable consumer (so that a problem with it is known
// at once) but fetches nothing until Start: a service that is not serving
// yet must not be handed events, each of which would cost a delivery
// attempt (the server counts every delivery).
func Deferred() SubscribeOption {
	return func(o *subscribeOptions) { o.deferred = true }
}

func (b *Bus) subscribe(ctx context.Context, service, typ string, h Handler, opt subscribeOptions) (*Subscription, error) {
	if opt.maxDeliver < 0 {
		return nil, fmt.Errorf("bus: MaxDeliver %d < 0", opt.maxDeliver)
	}
	if !ValidService(service) {
		return nil, fmt.Errorf("bus: invalid service name %q", service)
	}
	if !ValidType(typ) {
		return nil, fmt.Errorf("bus: invalid event type %q", typ)
	}
	if h == nil {
		return nil, errors.New("bus: nil handler")
	}
	if b.isClosed() {
		return nil, ErrClosed
	}
	name := ConsumerName(service, typ)
	cons, err := ensureConsumer(ctx, b.js, b.cfg.Stream, jetstream.ConsumerConfig{
		Durable:     name,
		Description: fmt.Sprintf("meshd: %s receives %s", service, typ),
		// The shared subject of the type, plus this service's own redrive
		// subject for it (see Redrive).
		FilterSubjects: []string{b.cfg.Subjects + "." + typ, b.redriveSubject(service, typ)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        b.cfg.AckWait,
		// Attempts are counted here, not by the server: a server-side cap
		// would strand an event whose dead-lettering failed. See handle.
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 2*b.cfg.Concurrency),
		Metadata:      map[string]string{metaService: service, metaType: typ},
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	info := cons.CachedInfo()
	if len(cons.Replaced) > 0 {
		b.log.Warn("bus: the stored state of a durable consumer cannot be opened; its replacement delivers every stored event of the type again",
			"service", service, "type", typ, "unusable", strings.Join(cons.Replaced, ","), "consumer", info.Name,
			"pending", info.NumPending, "error", cons.Cause)
		b.cfg.Hooks.consumerReplaced(service, typ)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Subscription{
		b: b, service: service, typ: typ, h: h, cons: cons.Consumer, name: info.Name,
		max: cmp.Or(opt.maxDeliver, b.cfg.MaxDeliver),
		ctx: hctx, cancel: cancel,
		stopping: make(chan struct{}),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	if !opt.deferred {
		if err := s.Start(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// Consumer is the name of the durable consumer the subscription reads:
// ConsumerName's, or that of its replacement when the first one's stored
// state could not be opened.
func (s *Subscription) Consumer() string { return s.name }

// Start starts delivery on a subscription made with
// Deferred; on one already started it does nothing. After
// Stop (or Bus.Close) it returns ErrClosed.
func (s *Subscription) Start() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	select {
	case <-s.stopping:
		return ErrClosed
	default:
	}
	if s.started {
		return nil
	}
	s.started = true
	n := s.b.cfg.Concurrency
	s.free = make(chan struct{}, n)
	for range n {
		s.free <- struct{}{}
	}
	s.work = make(chan jetstream.Msg)
	s.pulls, s.cancelPulls = context.WithCancel(context.Background())
	s.wg.Add(n + 1)
	go s.puller()
	for range n {
		go s.worker()
	}
	return nil
}

// Pull requests: each asks for at most as many events as there are free
// workers and lasts pullExpiry; the server sends a heartbeat every
// pullHeartbeat while it has nothing, and a request that hears nothing for
// two heartbeats (lost by the server) ends then, so that a new one is
// made: a lost request costs at most 2 s, not a stall.
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
)

// puller keeps a pull request open for every free worker. It replaces
// jetstream's Messages iterator, whose shared pending count lost a wake-up:
// its Next decides whether to pull again only when it starts or receives
// something, and skips the pull while the previous request is still being
// published (fetchInProgress); when that request's events were all
// delivered and taken before the flag was cleared (the publishing goroutine
// descheduled on the shared in-process connection's lock), every worker
// waited in Next with nothing requested, until the missing-heartbeat check
// pulled again 5 s later. Here one goroutine owns the count (the free
// tokens), a request's unused tokens come back when it ends, and a token
// is back the moment its worker is free, so a free worker always has a
// request open for it.
func (s *Subscription) puller() {
	defer s.wg.Done()
	var open sync.WaitGroup // requests still handing out events
	defer func() {
		open.Wait()
		close(s.work)
	}()
	for {
		select {
		case <-s.free:
		case <-s.stopping:
			return
		}
		n := 1
	more:
		for n < s.b.cfg.Concurrency {
			select {
			case <-s.free:
				n++
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(s.pulls, pullExpiry)
		batch, err := s.cons.Fetch(n, jetstream.FetchContext(ctx), jetstream.FetchHeartbeat(pullHeartbeat))
		if err != nil {
			cancel()
			s.giveBack(n)
			if s.pulls.Err() != nil {
				return
			}
			s.b.log.Warn("bus: fetching events", "service", s.service, "type", s.typ, "error", err)
			select {
			case <-time.After(250 * time.Millisecond):
			case <-s.stopping:
				return
			}
			continue
		}
		open.Go(func() {
			defer cancel()
			got := 0
			for msg := range batch.Messages() {
				got++
				s.work <- msg // a worker is free: this event holds its token
			}
			if err := batch.Error(); err != nil && s.pulls.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				s.b.log.Warn("bus: fetching events", "service", s.service, "type", s.typ, "error", err)
				if got == 0 {
					// Refused at once (no responders while the consumer
					// has no leader): the tokens come back after a pause,
					// as after a failed Fetch, or the puller asks again at
					// once, thousands of times a second, each one logged.
					select {
					case <-time.After(250 * time.Millisecond):
					case <-s.stopping:
					}
				}
			}
			s.giveBack(n - got)
		})
	}
}

// giveBack returns n tokens of free workers to the puller.
func (s *Subscription) giveBack(n int) {
	for range n {
		s.free <- struct{}{}
	}
}

// Stop stops delivery and waits for in-flight handlers to return. Events
// already fetched from the server (at most Config.Concurrency) are handled
// too before it returns, rather than left unacknowledged until AckWait
// redelivers them: after a graceful restart they would come back that much
// later, past business timeouts of the same order. Stop is idempotent.
func (s *Subscription) Stop() {
	s.stopOnce.Do(func() {
		s.startMu.Lock()
		close(s.stopping)
		started := s.started
		s.startMu.Unlock()
		if started {
			// Open requests end now; what they received is still handed
			// out (a request's received events outlive its cancellation).
			s.cancelPulls()
		}
		s.wg.Wait()
		s.cancel()
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
	})
}

// worker handles deliveries one after another until the puller stops.
// Long-lived workers keep their grown stacks, where a goroutine per event
// grew a fresh stack through wazero on every delivery.
func (s *Subscription) worker() {
	defer s.wg.Done()
	for msg := range s.work {
		s.handle(msg)
		s.free <- struct{}{}
	}
}

// handle runs one delivery to the end: ack, nak with delay, or dead letter.
func (s *Subscription) handle(msg jetstream.Msg) {
	cfg := &s.b.cfg
	attempt := 1
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
		attempt = max(1, int(md.NumDelivered)-s.refusedDeliveries(seq, 0))
	}
	defer func() {
		if seq != 0 {
			s.forgetRefused(seq) // settled, or nak'ed to come back here
		}
	}()
	ev, err := decodeEvent(msg.Headers(), msg.Data())
	ev.Attempt = attempt
	// Built only when a line is logged: the success path logs nothing.
	log := func() *slog.Logger { return s.eventLog(ev, attempt) }
	if err != nil {
		log().Error("bus: undecodable event, dead-lettering", "error", err)
		s.deadLetter(msg, ev, "undecodable event: "+err.Error(), attempt)
		return
	}
	if attempt > s.max {
		// Only reached when an earlier dead-lettering failed or a node
		// stopped mid-handler on the last attempt.
		s.deadLetter(msg, ev, fmt.Sprintf("delivered %d times, more than MaxDeliver %d", attempt, s.max), attempt)
		return
	}
	start := time.Now()
	err = s.run(ev)
	cfg.Hooks.delivered(s.service, s.typ, attempt, err, time.Since(start))
	var busy *Busy
	if err != nil && (errors.Is(err, ErrWritesRefused) || errors.As(err, &busy)) && seq != 0 {
		// The store refused the handler's effects, or the handler may not
		// run yet: not the handler's failure, and not an attempt. It comes
		// back when the store may, or after the handler's delay.
		s.refusedDeliveries(seq, 1)
		seq = 0 // keep the count for its next delivery
		delay := storeRetryDelay
		if busy != nil && !errors.Is(err, ErrWritesRefused) {
			delay = busy.Delay
		}
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log().Error("bus: nak failed; redelivery after AckWait", "error", nerr)
		}
		return
	}
	if err != nil {
		if attempt < s.max {
			delay := backoff(cfg.Backoff, attempt)
			log().Warn("bus: handler failed, will retry", "error", err, "retry_in", delay)
			if nerr := msg.NakWithDelay(delay); nerr != nil {
				log().Error("bus: nak failed; redelivery after AckWait", "error", nerr)
			}
			return
		}
		log().Error("bus: handler failed on last attempt, dead-lettering", "error", err)
		s.deadLetter(msg, ev, err.Error(), attempt)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		log().Error("bus: ack failed; event will be redelivered", "error", err)
	}
}

// eventLog is the logger for lines about one delivery of ev.
func (s *Subscription) eventLog(ev Event, attempt int) *slog.Logger {
	return s.b.log.With("service", s.service, "event_id", ev.ID, "type", s.typ, "attempt", attempt,
		"trace_id", traceparent.TraceID(ev.TraceParent))
}

// run calls the handler under HandlerTimeout, turning a panic into an error.
func (s *Subscription) run(ev Event) (err error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return s.h(ctx, ev)
}

func backoff(b []time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	return b[min(attempt, len(b))-1]
}

// deadLetter copies msg to the dead-letter stream and, once that is stored,
// terminates it on this consumer. If the copy fails the event is nak'ed and
// comes back, so the copy is retried: an event is never dropped.
func (s *Subscription) deadLetter(msg jetstream.Msg, ev Event, reason string, attempt int) {
	cfg := &s.b.cfg
	log := s.eventLog(ev, attempt)
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if k == jetstream.MsgIDHeader || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(hdrDLQReason, headerSafe(reason))
	h.Set(hdrDLQService, s.service)
	h.Set(hdrDLQAttempts, strconv.Itoa(attempt))
	h.Set(hdrDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(hdrDLQSeq, strconv.FormatUint(seq, 10))
	subj := s.b.dlqSubject(s.service, s.typ)
	// One dead letter per (service, stored event), whatever the retries.
	id := s.service + "/" + strconv.FormatUint(seq, 10)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl := &nats.Msg{Subject: subj, Header: h, Data: msg.Data()}
	if err := s.b.send(ctx, dl, id, cfg.DLQStream); err != nil {
		delay := backoff(cfg.Backoff, attempt)
		log.Error("bus: dead-letter publish failed; event kept for retry", "error", err, "retry_in", delay)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log.Error("bus: nak failed; redelivery after AckWait", "error", nerr)
		}
		return
	}
	cfg.Hooks.deadLettered(s.service, s.typ)
	if err := msg.TermWithReason("meshd: dead-lettered"); err != nil {
		// The dead letter is stored; a redelivery dead-letters again under
		// the same Nats-Msg-Id, which the DLQ stream deduplicates.
		log.Error("bus: term after dead-letter failed", "error", err)
	}
}

// headerSafe makes s fit in one header value.
func headerSafe(s string) string {
	const maxLen = 2048
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}

// refusedDeliveries adds add to the count of store-refused deliveries of
// the event at stream sequence seq and returns the count.
func (s *Subscription) refusedDeliveries(seq uint64, add int) int {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if add > 0 {
		if s.refused == nil || len(s.refused) >= maxRefusedTracked {
			s.refused = make(map[uint64]int)
		}
		s.refused[seq] += add
	}
	return s.refused[seq]
}

func (s *Subscription) forgetRefused(seq uint64) {
	s.refusedMu.Lock()
	delete(s.refused, seq)
	s.refusedMu.Unlock()
}
