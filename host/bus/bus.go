// Package bus is meshd's at-least-once event bus on NATS JetStream.
//
// Events are CloudEvents 1.0 in binary mode: the payload is the event data
// and the attributes travel as ce-* headers. Each event type is a subject
// under Config.Subjects; every subscribing service has its own durable pull
// consumer per type, so each service sees every event of the types it
// subscribes to, including events published before it subscribed or while
// it was down.
//
// A handler's success acks the event. A failure is redelivered after a
// backoff; after Config.MaxDeliver attempts the event is copied to the
// dead-letter stream with the reason, and only then removed from the
// service's consumer. Nothing is dropped.
//
// Publishing first asks the store's health (one per NATS connection,
// shared with the key-value stores): while the store refuses writes (its
// disk is full or failing) a publish fails at once with an error wrapping
// ErrWritesRefused, nothing of it sent, and the store takes writes again
// by itself once space returns.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/jsasync"
	"github.com/meshd/meshd/host/internal/storefail"
)

// Defaults used for zero Config fields.
const (
	DefaultStream          = "MESHD_EVENTS"
	DefaultSubjects        = "meshd.events"
	DefaultDLQStream       = "MESHD_DLQ"
	DefaultDLQSubjects     = "meshd.dlq"
	DefaultRedriveSubjects = "meshd.redrive"
	DefaultScheduleStream  = "MESHD_SCHEDULED"
	DefaultScheduleSubject = "meshd.scheduled"
	DefaultMaxDeliver      = 5
	DefaultAckWait         = 15 * time.Second
	DefaultHandlerTimeout  = 10 * time.Second
	DefaultConcurrency     = 4
	DefaultDuplicateWindow = 2 * time.Minute
)

// DefaultBackoff is the redelivery delay after attempt 1, 2, 3, 4...; the
// last value repeats.
var DefaultBackoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// ErrWritesRefused is wrapped by the error of a publish refused at once
// because the store refuses writes (its disk is full or failing): nothing
// of it was sent. It is the same error as kv.ErrWritesRefused.
var ErrWritesRefused = storefail.ErrWritesRefused

// ErrClosed is returned by operations on a closed Bus.
var ErrClosed = errors.New("bus: closed")

// Config configures a Bus. Zero fields take the defaults above.
type Config struct {
	// Stream is the JetStream stream holding events.
	Stream string
	// Subjects is the subject prefix of events; an event of type T is
	// published on Subjects + "." + T.
	Subjects string
	// DLQStream is the dead-letter stream.
	DLQStream string
	// DLQSubjects is the dead-letter subject prefix; a dead letter of
	// service S and type T is stored on DLQSubjects + "." + S + "." + T.
	DLQSubjects string
	// RedriveSubjects is the prefix of the per-service redelivery subjects
	// (stored in the event stream): a redriven dead letter of service S and
	// type T is published on RedriveSubjects + "." + S + "." + T, which only
	// S's consumer of T also filters on, so no other subscriber sees it
	// again.
	RedriveSubjects string
	// ScheduleStream holds delayed events until they are due;
	// ScheduleSubject is its subject prefix.
	ScheduleStream, ScheduleSubject string
	// MaxDeliver is how many times an event is handed to a service before
	// it is dead-lettered.
	MaxDeliver int
	// Backoff is the delay before redelivery after a failed attempt n
	// (Backoff[n-1]; the last value repeats).
	Backoff []time.Duration
	// AckWait is how long the server waits for an ack before redelivering
	// (covers a node dying mid-handler). It must exceed HandlerTimeout. The
	// default, 15 s, is half the demo's 30 s payment timeout, so that an
	// event a dead process held comes back well before business timeouts
	// built on it fire.
	AckWait time.Duration
	// HandlerTimeout bounds one handler call.
	HandlerTimeout time.Duration
	// Concurrency is the number of handlers run at once per subscription.
	Concurrency int
	// Replicas is how many copies JetStream keeps of the event,
	// dead-letter and schedule streams, on as many nodes of a cluster (1
	// when 0, at most 5): natsd.Server.Replicas gives what the cluster can
	// hold. A stream with fewer is raised to it at New; one with more keeps
	// them (another node may have asked for them).
	Replicas int
	// DuplicateWindow is how long the stream remembers event ids to drop
	// repeated publishes.
	DuplicateWindow time.Duration
	// MaxAge bounds how long events are kept in the event stream; zero
	// keeps them until removed by other limits (none by default).
	MaxAge time.Duration
	// MaxBytes bounds the size of the event stream; the oldest events are
	// removed first. Zero means unlimited.
	MaxBytes int64
	// Hooks observe publishes, deliveries and dead letters (all optional).
	Hooks Hooks
}

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subjects == "" {
		c.Subjects = DefaultSubjects
	}
	if c.DLQStream == "" {
		c.DLQStream = DefaultDLQStream
	}
	if c.DLQSubjects == "" {
		c.DLQSubjects = DefaultDLQSubjects
	}
	if c.RedriveSubjects == "" {
		c.RedriveSubjects = DefaultRedriveSubjects
	}
	if c.ScheduleStream == "" {
		c.ScheduleStream = DefaultScheduleStream
	}
	if c.ScheduleSubject == "" {
		c.ScheduleSubject = DefaultScheduleSubject
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	return c
}

// validate reports every problem of a defaulted Config.
func (c Config) validate() error {
	var errs []error
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("MaxDeliver %d < 1", c.MaxDeliver))
	}
	for i, d := range c.Backoff {
		if d < 0 {
			errs = append(errs, fmt.Errorf("Backoff[%d] %s is negative", i, d))
		}
	}
	if c.HandlerTimeout < 0 {
		errs = append(errs, fmt.Errorf("HandlerTimeout %s is negative", c.HandlerTimeout))
	}
	if c.AckWait <= c.HandlerTimeout {
		errs = append(errs, fmt.Errorf("AckWait %s must exceed HandlerTimeout %s", c.AckWait, c.HandlerTimeout))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("Concurrency %d < 1", c.Concurrency))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas %d: want 1 to 5 (0 for 1)", c.Replicas))
	}
	if c.DuplicateWindow < 0 || c.MaxAge < 0 || c.MaxBytes < 0 {
		errs = append(errs, errors.New("DuplicateWindow, MaxAge and MaxBytes must not be negative"))
	}
	prefixes := []string{c.Subjects, c.DLQSubjects, c.RedriveSubjects, c.ScheduleSubject}
	for i, p := range prefixes {
		if !ValidType(p) {
			errs = append(errs, fmt.Errorf("subject prefix %q is not dot-separated plain tokens", p))
		}
		for _, q := range prefixes[:i] {
			if p == q || strings.HasPrefix(p+".", q+".") || strings.HasPrefix(q+".", p+".") {
				errs = append(errs, fmt.Errorf("subject prefixes %q and %q overlap", q, p))
			}
		}
	}
	if c.Stream == c.DLQStream || c.Stream == c.ScheduleStream || c.DLQStream == c.ScheduleStream {
		errs = append(errs, fmt.Errorf("Stream, DLQStream and ScheduleStream must differ"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: invalid config: %w", err)
	}
	return nil
}

// Bus publishes events and runs subscriptions. It is safe for concurrent
// use.
type Bus struct {
	js     jetstream.JetStream
	cfg    Config
	log    *slog.Logger
	health *storefail.Health

	mu     sync.Mutex
	closed bool
	subs   map[*Subscription]struct{}

	sched   *scheduler
	lag     lagMonitor
	lagOnce sync.Once // stops lag
}

// New creates or updates the event and dead-letter streams and returns a
// Bus on them.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Bus, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "meshd events",
		Subjects:    []string{cfg.Subjects + ".>", cfg.RedriveSubjects + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxBytes(cfg.MaxBytes),
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", cfg.Stream, err)
	}
	if _, err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        cfg.DLQStream,
		Description: "meshd dead letters",
		Subjects:    []string{cfg.DLQSubjects + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.DuplicateWindow,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", cfg.DLQStream, err)
	}
	health := storefail.For(js)
	health.SetLogger(log)
	b := &Bus{js: js, cfg: cfg, log: log, health: health, subs: map[*Subscription]struct{}{}}
	sched, err := b.startScheduler(ctx)
	if err != nil {
		return nil, err
	}
	b.sched = sched
	b.startLagMonitor()
	return b, nil
}

// prepare checks that the bus is open and ev is publishable, stamping a zero
// ev.Time with now.
func (b *Bus) prepare(ev *Event) error {
	if b.isClosed() {
		return ErrClosed
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	return ev.validate()
}

// Publish stores ev in the event stream and returns once JetStream has
// acknowledged it. A zero ev.Time is set to now. Publishing an ID already
// seen within the duplicate window succeeds without storing it again.
func (b *Bus) Publish(ctx context.Context, ev Event) error {
	msg, stream, err := b.message(&ev, 0)
	if err != nil {
		return err
	}
	if err := b.publish(ctx, msg, ev.ID, stream); err != nil {
		return fmt.Errorf("bus: publish %s %s: %w", ev.Type, ev.ID, err)
	}
	b.cfg.Hooks.published(ev.Type)
	return nil
}

// publish stores msg, of event id, in stream, unless the store refuses
// writes, and tells the store's health how it went.
func (b *Bus) publish(ctx context.Context, msg *nats.Msg, id, stream string) error {
	w, err := b.health.Begin()
	if err != nil {
		return err
	}
	err = b.send(ctx, msg, id, stream)
	w.End(err)
	return err
}

// send stores msg in stream under the deduplication id id, waiting while
// nobody listens on the stream (placed a moment ago, or electing a
// leader: jsasync.RetryOpts).
func (b *Bus) send(ctx context.Context, msg *nats.Msg, id, stream string) error {
	_, err := b.js.PublishMsg(ctx, msg, append(jsasync.RetryOpts(), jetstream.WithMsgID(id), jetstream.WithExpectStream(stream))...)
	return err
}

// Pending is one event of PublishAll. A positive Delay schedules it as
// PublishDelayed does.
type Pending struct {
	Event Event
	Delay time.Duration
}

// PublishAll publishes each of evs as Publish or PublishDelayed would,
// but sends them all before waiting for the acknowledgements: one round
// trip to the server for the lot instead of one each. Every event is
// checked before anything is sent. It returns nil once every event is
// stored; otherwise the errors of those that were not (the others may
// be stored, as when a sequence of Publish calls stops at an error).
func (b *Bus) PublishAll(ctx context.Context, evs []Pending) error {
	if len(evs) == 1 {
		return b.PublishDelayed(ctx, evs[0].Event, evs[0].Delay)
	}
	msgs := make([]*nats.Msg, len(evs))
	opts := make([][]jetstream.PublishOpt, len(evs))
	for i := range evs {
		ev := &evs[i].Event
		msg, stream, err := b.message(ev, evs[i].Delay)
		if err != nil {
			return err
		}
		msgs[i], opts[i] = msg, []jetstream.PublishOpt{jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(stream)}
	}
	if len(msgs) == 0 {
		return nil
	}
	w, err := b.health.Begin()
	if err != nil {
		return fmt.Errorf("bus: publish %d events: %w", len(msgs), err)
	}
	var errs []error
	var first error // the first the server answered, for the store's health
	// Sent again: the events no stream took because it had no leader (no
	// responders), for at most publishRetryFor. Their ids make a second
	// copy of one stored after all a duplicate the stream drops.
	var idx []int // evs[idx[j]] is msgs[j] on a resend; nil: evs[j]
	allMsgs, allOpts := msgs, opts
	giveUp := time.Now().Add(publishRetryFor)
	for {
		var again []int
		for j, r := range jsasync.Publish(ctx, b.js, msgs, opts) {
			i := j
			if idx != nil {
				i = idx[j]
			}
			ev := &evs[i].Event
			switch {
			case r.Err != nil && retryPublish(r.Err) && ctx.Err() == nil && time.Now().Before(giveUp):
				again = append(again, i)
			case r.Err != nil:
				if first == nil {
					first = r.Err
				}
				errs = append(errs, fmt.Errorf("bus: publish %s %s: %w", ev.Type, ev.ID, r.Err))
			case evs[i].Delay <= 0:
				b.cfg.Hooks.published(ev.Type)
			}
		}
		if len(again) == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(publishRetryPause):
		}
		idx, msgs, opts = again, make([]*nats.Msg, len(again)), make([][]jetstream.PublishOpt, len(again))
		for j, i := range again {
			msgs[j], opts[j] = allMsgs[i], allOpts[i]
		}
	}
	w.End(first)
	return errors.Join(errs...)
}

// PublishAll sends an event again while its stream has no leader (after a
// node's loss its replicas elect one in 4 to 9 s), every
// publishRetryPause, for at most publishRetryFor or until its context
// ends: an answer of failure after part of an invocation's effects were
// stored tells a client to retry what was done.
const (
	publishRetryFor   = 10 * time.Second
	publishRetryPause = 250 * time.Millisecond
)

// retryPublish reports whether a publish that failed with err may be sent
// again: no stream answered (no leader), or it was not sent.
func retryPublish(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jsasync.ErrNotSent)
}

// message checks ev (stamping a zero Time with now) and returns the message
// that stores it, on the event stream or, with a positive delay, on the
// schedule stream, and the name of that stream.
func (b *Bus) message(ev *Event, delay time.Duration) (*nats.Msg, string, error) {
	if delay > MaxDelay {
		return nil, "", fmt.Errorf("bus: delay %s is longer than %s", delay, MaxDelay)
	}
	if err := b.prepare(ev); err != nil {
		return nil, "", err
	}
	if delay <= 0 {
		return &nats.Msg{Subject: b.cfg.Subjects + "." + ev.Type, Header: ev.header(), Data: ev.Data}, b.cfg.Stream, nil
	}
	h := ev.header()
	h.Set(hdrDeliverAt, strconv.FormatInt(time.Now().Add(delay).UnixNano(), 10))
	return &nats.Msg{Subject: b.cfg.ScheduleSubject + "." + ev.Type, Header: h, Data: ev.Data}, b.cfg.ScheduleStream, nil
}

// maxBytes maps the Config convention (0 = unlimited) to JetStream's (-1).
func maxBytes(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close stops every subscription and waits for their in-flight handlers.
// When ctx ends first, the handlers' contexts are cancelled and Close
// returns ctx's error once they have returned. Close is idempotent.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	if b.sched != nil {
		b.sched.stop()
	}
	b.lagOnce.Do(b.stopLagMonitor)

	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, s := range subs {
			wg.Go(s.Stop)
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range subs {
			s.cancel()
		}
		<-done
		return ctx.Err()
	}
}
