// Package storefail keeps the health of the JetStream store behind a NATS
// connection as its writers see it, so that a full or failing disk costs
// writers a fast, clear error instead of a hang, and writes come back by
// themselves once the disk does.
//
// What nats-server (2.15) does when its disk fills: the file store of the
// stream being written fails with ENOSPC, keeps that error for good (every
// later write to the stream fails with it, even once space is back) and
// never answers the publisher, who waits out its whole timeout. JetStream
// stays enabled and the other streams carry on until they too write. Only
// reloading the stream from disk clears the error: a restart of the server,
// or of JetStream inside it (ShutdownJetStream then EnableJetStream, about
// 10 ms on a small store).
//
// A Health therefore:
//   - refuses writes before the disk is full: while accepting, a writer's
//     Begin reads the free space of the store's file system (statfs, at most
//     every StatEvery) and refuses once it falls under Reserve;
//   - learns from failed writes (End): a storage error (no space, the
//     server's resource limits, JetStream disabled) starts refusing, and a
//     write that timed out is diagnosed (free space, the server's health
//     report of stream write errors);
//   - while refusing, answers every Begin at once with an error wrapping
//     ErrWritesRefused, and at most every ProbeInterval lets one Begin
//     probe: free space back over the reserve (with a margin), streams with
//     a kept write error reloaded by restarting the embedded JetStream,
//     then that one write goes through as a trial and its success ends the
//     refusal;
//   - logs an episode in a bounded number of lines: one when it starts, a
//     summary every SummaryEvery with the count of writes refused while it
//     lasts (only while writes keep coming), one when it ends.
//
// The probes and the JetStream restart need the embedded server, which the
// in-process connection leads to; with an external server a Health knows
// no free space and can restart nothing: explicit storage errors still make
// it refuse, and a trial write every ProbeInterval ends the refusal once the
// server takes writes again.
//
// A Health has no goroutine: probes run inside the Begin that wins them.
package storefail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrWritesRefused is wrapped by the error of a write refused because the
// store refuses writes (its disk is full or failing). Nothing of such a
// write was sent.
var ErrWritesRefused = errors.New("store refuses writes")

const (
	// ProbeInterval is the least time between two probes of a store that
	// refuses writes: recovery is seen within it of the first write after
	// space returns.
	ProbeInterval = time.Second
	// StatEvery is the least time between two reads of the free space
	// while the store accepts writes.
	StatEvery = 50 * time.Millisecond
	// SummaryEvery is the least time between two log lines of one episode.
	SummaryEvery = 10 * time.Second
	// trialTimeout is how long a trial write may stay unreported before
	// another is let through (its writer went away without End).
	trialTimeout = 30 * time.Second
	// maxCause bounds the cause quoted in errors and log lines.
	maxCause = 300
)

// Reserve is the free space, in bytes, under which a store on a file
// system of total bytes refuses writes: 1% of it, at least 1 MiB and at
// most 64 MiB. It leaves room for what the server writes on its own
// (consumer state, indexes) and for the writes already under way when
// the free space was last read. A refusal ends once free space is back
// over Reserve plus a quarter, so that a store at the edge does not flap.
func Reserve(total uint64) uint64 {
	return min(max(total/100, 1<<20), 64<<20)
}

// Health is the health of one store as its writers see it. It is safe for
// concurrent use.
type Health struct {
	srv   *server.Server                         // embedded server; nil when external
	jscfg *server.JetStreamConfig                // its JetStream configuration when first seen
	free  func() (free, total uint64, err error) // free space of the store's file system; nil: unknown
	log   atomic.Pointer[slog.Logger]

	state  atomic.Pointer[episode] // nil: accepting writes
	statAt atomic.Int64            // unix nanos of the last read of the free space while accepting

	mu sync.Mutex // held by the one probe or diagnosis running

	restarts atomic.Int64 // JetStream restarts made, for tests and logs
}

// episode is one stretch of refusing writes.
type episode struct {
	err       error // what a refused write gets: wraps ErrWritesRefused and the cause
	cause     string
	since     time.Time
	refused   atomic.Int64 // writes refused in the episode
	reported  atomic.Int64 // refused at the last log line
	nextProbe atomic.Int64 // unix nanos
	nextLog   atomic.Int64 // unix nanos
	trial     atomic.Int64 // unix nanos a trial write was let through; 0: none
}

var healths sync.Map // *nats.Conn → *Health

// For returns the Health of the store behind js's connection, the same
// for every caller on that connection. A Health lives as long as its
// connection is referenced.
func For(js jetstream.JetStream) *Health {
	nc := js.Conn()
	if h, ok := healths.Load(nc); ok {
		return h.(*Health)
	}
	h := newHealth(nc)
	if prev, loaded := healths.LoadOrStore(nc, h); loaded {
		return prev.(*Health)
	}
	// A process that opens many connections (tests) keeps only the live
	// ones' Healths.
	sweep()
	return h
}

// sweep forgets the Health of every closed connection.
func sweep() {
	healths.Range(func(k, _ any) bool {
		if k.(*nats.Conn).IsClosed() {
			healths.Delete(k)
		}
		return true
	})
}

func newHealth(nc *nats.Conn) *Health {
	h := &Health{}
	if srv, ok := nc.Opts.InProcessServer.(*server.Server); ok {
		h.srv = srv
		h.jscfg = srv.JetStreamConfig()
		if dir := srv.StoreDir(); dir != "" {
			h.free = func() (uint64, uint64, error) { return statfs(dir) }
		}
	}
	return h
}

// SetLogger sets the logger of the Health's episodes when none is set yet
// (the first caller's wins). Without one, nothing is logged.
func (h *Health) SetLogger(l *slog.Logger) {
	if l != nil {
		h.log.CompareAndSwap(nil, l)
	}
}

// SetFreeSpace replaces how the Health reads the free space of the store's
// file system (nil: it does not). For tests.
func (h *Health) SetFreeSpace(f func() (free, total uint64, err error)) {
	h.mu.Lock()
	h.free = f
	h.mu.Unlock()
	h.statAt.Store(0)
}

// Restarts returns how many times the Health restarted the embedded
// JetStream to clear kept write errors.
func (h *Health) Restarts() int64 { return h.restarts.Load() }

// Refusing returns the error refused writes get, or nil while the store
// accepts writes.
func (h *Health) Refusing() error {
	if ep := h.state.Load(); ep != nil {
		return ep.err
	}
	return nil
}

// Write is one write Begin let through; its writer reports the outcome
// with End.
type Write struct {
	h     *Health
	trial *episode // the episode this write is the trial of
}

// Begin is called before a write is sent. It returns an error wrapping
// ErrWritesRefused when the store refuses writes; otherwise the write may
// be sent, and its outcome must be reported with End.
func (h *Health) Begin() (Write, error) {
	ep := h.state.Load()
	if ep == nil {
		if err := h.guard(); err != nil {
			return Write{}, err
		}
		return Write{h: h}, nil
	}
	now := time.Now().UnixNano()
	if t := ep.trial.Load(); (t == 0 || now-t > int64(trialTimeout)) && now >= ep.nextProbe.Load() && h.mu.TryLock() {
		w, err := h.probe(ep, now)
		h.mu.Unlock()
		if err == nil {
			return w, nil
		}
	}
	return Write{}, h.refuse(ep, now)
}

// refuse counts a refused write of ep and returns its error, logging a
// summary when one is due.
func (h *Health) refuse(ep *episode, now int64) error {
	n := ep.refused.Add(1)
	if next := ep.nextLog.Load(); now >= next && ep.nextLog.CompareAndSwap(next, now+int64(SummaryEvery)) {
		if l := h.log.Load(); l != nil {
			l.Warn("store still refuses writes", slog.String("cause", ep.cause),
				slog.Int64("refused", n-ep.reported.Swap(n)), slog.Duration("for", time.Since(ep.since).Round(time.Millisecond)))
		}
	}
	return ep.err
}

// guard reads the free space, at most every StatEvery, and starts refusing
// when it is under the reserve.
func (h *Health) guard() error {
	if h.free == nil {
		return nil
	}
	now := time.Now().UnixNano()
	last := h.statAt.Load()
	if now-last < int64(StatEvery) || !h.statAt.CompareAndSwap(last, now) {
		return nil
	}
	if !h.mu.TryLock() {
		return nil // a probe or diagnosis is reading it
	}
	cause := h.lowSpace(1)
	h.mu.Unlock()
	if cause == "" {
		return nil
	}
	return h.refuse(h.enter(cause), now)
}

// lowSpace returns why the free space is too low (under the reserve times
// factor, in quarters: 1 is the reserve, 5/4 the margin to end a refusal),
// or "" when it is not or cannot be read. h.mu is held.
func (h *Health) lowSpace(factor float64) string {
	if h.free == nil {
		return ""
	}
	free, total, err := h.free()
	if err != nil {
		return ""
	}
	want := uint64(float64(Reserve(total)) * factor)
	if free >= want {
		return ""
	}
	return fmt.Sprintf("%d bytes free on the store's file system, under the %d it keeps in reserve", free, want)
}

// enter starts refusing writes for cause, unless an episode is already
// under way; it returns the episode under way.
func (h *Health) enter(cause string) *episode {
	if ep := h.state.Load(); ep != nil {
		return ep
	}
	cause = bound(cause)
	now := time.Now()
	ep := &episode{err: fmt.Errorf("%w: %s", ErrWritesRefused, cause), cause: cause, since: now}
	ep.nextProbe.Store(now.Add(ProbeInterval).UnixNano())
	ep.nextLog.Store(now.Add(SummaryEvery).UnixNano())
	if !h.state.CompareAndSwap(nil, ep) {
		return h.state.Load()
	}
	if l := h.log.Load(); l != nil {
		l.Error("store refuses writes; writes fail at once until it takes them again", slog.String("cause", cause))
	}
	return ep
}

// probe checks whether the store of ep may take writes again: free space
// back, no stream with a kept write error (restarting JetStream to clear
// them). It returns a trial write when so. h.mu is held.
func (h *Health) probe(ep *episode, now int64) (Write, error) {
	ep.nextProbe.Store(now + int64(ProbeInterval))
	if cause := h.lowSpace(1.25); cause != "" {
		return Write{}, errors.New(cause)
	}
	if err := h.repair(); err != nil {
		return Write{}, err
	}
	ep.trial.Store(now)
	return Write{h: h, trial: ep}, nil
}

// End reports the outcome of the write: err is what the server answered
// (nil: stored), before any wrapping that could quote user bytes.
func (w Write) End(err error) {
	h := w.h
	if h == nil {
		return
	}
	if ep := w.trial; ep != nil {
		switch {
		case err == nil:
			h.recover(ep)
		case classify(err) == kindOther:
			// The trial proved nothing (a refused key, a caller gone):
			// let the next write try again at once.
			ep.nextProbe.Store(0)
		}
		ep.trial.Store(0)
		return
	}
	if err == nil {
		return
	}
	switch classify(err) {
	case kindStorage:
		h.enter(err.Error())
	case kindMaybe:
		if h.state.Load() == nil && h.mu.TryLock() {
			cause := h.diagnose()
			h.mu.Unlock()
			if cause != "" {
				h.enter(cause)
			}
		}
	}
}

// recover ends ep after its trial write succeeded.
func (h *Health) recover(ep *episode) {
	if !h.state.CompareAndSwap(ep, nil) {
		return
	}
	h.statAt.Store(time.Now().UnixNano())
	if l := h.log.Load(); l != nil {
		l.Info("store takes writes again", slog.String("cause", ep.cause),
			slog.Duration("after", time.Since(ep.since).Round(time.Millisecond)),
			slog.Int64("refused", ep.refused.Load()), slog.Int64("jetstream_restarts", h.restarts.Load()))
	}
}

// diagnose finds why a write timed out, when it was the store: free space
// under the reserve, a stream with a kept write error, JetStream disabled.
// It returns "" when none of these is seen. h.mu is held.
func (h *Health) diagnose() string {
	if cause := h.lowSpace(1); cause != "" {
		return cause
	}
	if h.srv == nil {
		return ""
	}
	if !h.srv.JetStreamEnabled() {
		if h.srv.Running() {
			return "JetStream is disabled"
		}
		return ""
	}
	if broken := brokenStreams(h.srv); len(broken) > 0 {
		return broken[0]
	}
	return ""
}

// brokenStreams returns the server's reports of streams that keep a write
// error.
func brokenStreams(srv *server.Server) []string {
	hs := srv.Healthz(&server.HealthzOptions{Details: true})
	var out []string
	for _, e := range hs.Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error") {
			out = append(out, e.Error)
		}
	}
	return out
}

// repair clears what keeps the embedded server from storing: JetStream
// disabled, streams keeping a write error. Both take a restart of
// JetStream inside the server, which reloads every stream from disk as a
// restart of the process would (what was stored stays; what was not
// acknowledged may be gone). Nothing is done to an external server or to a
// server shutting down. h.mu is held.
func (h *Health) repair() error {
	srv := h.srv
	if srv == nil {
		return nil
	}
	if !srv.Running() {
		return errors.New("the NATS server is shutting down")
	}
	cfg := srv.JetStreamConfig()
	var broken []string
	if cfg != nil {
		if broken = brokenStreams(srv); len(broken) == 0 {
			return nil
		}
	} else if cfg = h.jscfg; cfg == nil {
		return errors.New("JetStream is disabled and its configuration unknown")
	}
	start := time.Now()
	if l := h.log.Load(); l != nil {
		l.Warn("restarting JetStream to reload streams that kept a write error", slog.Int("streams", len(broken)),
			slog.String("first", bound(first(broken))))
	}
	c := *cfg
	// EnableJetStream puts JetStream's directory under the one it is given.
	c.StoreDir = filepath.Dir(cfg.StoreDir)
	_ = srv.ShutdownJetStream()
	if err := srv.EnableJetStream(&c); err != nil && !srv.JetStreamEnabled() {
		return fmt.Errorf("restarting JetStream: %s", bound(err.Error()))
	}
	h.restarts.Add(1)
	if broken := brokenStreams(srv); len(broken) > 0 {
		return fmt.Errorf("after restarting JetStream: %s", bound(broken[0]))
	}
	if l := h.log.Load(); l != nil {
		l.Info("JetStream restarted", slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

type kind int

const (
	kindOther   kind = iota // not the store's doing
	kindStorage             // the store refused for want of space or a write error
	kindMaybe               // no answer: the store's doing if a diagnosis says so
)

// JetStream API error codes that mean the store cannot take the write.
var storageCodes = map[jetstream.ErrorCode]bool{
	10023: true, // insufficient resources
	10047: true, // storage resources exceeded
	10077: true, // stream store failed
	10076: true, // JetStream not enabled
	10039: true, // JetStream not enabled for account
}

// batchIncomplete is the error code of an atomic batch a message of which
// the server did not take (it could not stage it, when its disk is full).
const batchIncomplete jetstream.ErrorCode = 10176

// classify sorts the error of a write.
func classify(err error) kind {
	var api *jetstream.APIError
	switch {
	case err == nil, errors.Is(err, ErrWritesRefused), errors.Is(err, context.Canceled):
		return kindOther
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return kindStorage
	case errors.As(err, &api) && storageCodes[api.ErrorCode]:
		return kindStorage
	case strings.Contains(err.Error(), "no space left on device"):
		return kindStorage
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		api != nil && api.ErrorCode == batchIncomplete:
		// No answer, no JetStream to answer, or an atomic batch the server
		// could not stage (which it reports as incomplete).
		return kindMaybe
	}
	return kindOther
}

// bound cuts s to maxCause bytes.
func bound(s string) string {
	if len(s) > maxCause {
		return s[:maxCause] + "…"
	}
	return s
}
