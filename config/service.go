package config

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/runtime"
)

// Service is a service file: the operator's configuration for one service,
// read from <name>.toml beside <name>.wasm in the plugin directory. A
// service without one is granted nothing beyond logging: it may serve the
// routes it declares but not subscribe, publish, keep state or discover
// other services.
type Service struct {
	Grants ServiceGrants `toml:"grants"`
	Limits ServiceLimits `toml:"limits"`
	// Config is the service's own configuration, read by the guest with
	// config_get (ABI v1.1).
	Config map[string]string `toml:"config"`
	// Events tunes the service's subscriptions.
	Events Events `toml:"events"`
	// Calls tunes the service's calls to other services, by callee: a
	// [calls.<callee>] table per callee named in grants.calls.
	Calls map[string]Call `toml:"calls"`
}

// Call is a [calls.<callee>] table: the timeout of this service's calls
// to the callee, and the thresholds of the circuit breakers in front of
// the callee. A zero (left out) value takes the daemon's default (see
// host/mesh: DefaultTimeout, DefaultSettings). The breaker thresholds
// apply to every caller's breaker of the callee: when two service files
// set different ones for one callee, the first caller by name wins and the
// daemon logs the disagreement.
type Call struct {
	// Timeout bounds one call (every attempt of it); the call still ends
	// before its caller's deadline.
	Timeout Duration `toml:"timeout"`
	// ConsecutiveFailures trips the breaker after that many failed
	// attempts in a row.
	ConsecutiveFailures uint32 `toml:"consecutive_failures"`
	// FailureRatio trips the breaker when that share of the attempts in
	// Window failed, once MinRequests were made.
	FailureRatio float64 `toml:"failure_ratio"`
	// MinRequests is how many attempts Window needs before FailureRatio
	// applies.
	MinRequests uint32 `toml:"min_requests"`
	// Window is the rolling window of FailureRatio.
	Window Duration `toml:"window"`
	// OpenFor is how long an open breaker fails calls fast before it lets
	// probes through.
	OpenFor Duration `toml:"open_for"`
	// Probes is how many probe calls a half-open breaker lets through, and
	// how many successes in a row close it.
	Probes uint32 `toml:"probes"`
}

// MinIdleRelease is the shortest idle_release but 0s (never): a module
// that sleeps and wakes between calls a few milliseconds apart would pay
// a wake-up for each.
const MinIdleRelease = time.Second

// ValidIdleRelease reports whether d is an idle_release meshd takes: 0s
// (never) or at least MinIdleRelease.
func ValidIdleRelease(d time.Duration) bool { return d == 0 || d >= MinIdleRelease }

// MaxCallTimeout bounds [calls.<callee>] timeout: a call never outlives its
// caller, whose own deadline is bounded far below it.
const MaxCallTimeout = 10 * time.Minute

// Breaker is c's breaker thresholds.
func (c Call) Breaker() mesh.Settings {
	return mesh.Settings{
		ConsecutiveFailures: c.ConsecutiveFailures,
		FailureRatio:        c.FailureRatio,
		MinRequests:         c.MinRequests,
		Window:              c.Window.Duration,
		OpenFor:             c.OpenFor.Duration,
		Probes:              c.Probes,
	}
}

// ServiceGrants is the [grants] table of a service file.
type ServiceGrants struct {
	Publish   []string `toml:"publish"`
	Subscribe []string `toml:"subscribe"`
	KV        bool     `toml:"kv"`
	Discover  []string `toml:"discover"`
	// Calls names the services the module may call (ABI v1.2); "*" for
	// any. A call to any other is denied.
	Calls []string `toml:"calls"`
	// CatchAll lets the module declare catch-all routes ("/",
	// "/{rest...}"), which answer every path of their method that no
	// other route takes.
	CatchAll bool `toml:"catch_all"`
}

// ServiceLimits is the [limits] table of a service file: each set value
// overrides the daemon's default (ModuleConfig).
type ServiceLimits struct {
	MemoryPages    uint32   `toml:"memory_pages"`
	TableEntries   uint32   `toml:"table_entries"`
	CallTimeout    Duration `toml:"call_timeout"`
	PoolMin        int      `toml:"pool_min"`
	PoolMax        int      `toml:"pool_max"`
	AcquireTimeout Duration `toml:"acquire_timeout"`
	MaxCalls       int      `toml:"max_calls"`
	MaxInputBytes  int      `toml:"max_input_bytes"`
	MaxOutputBytes int      `toml:"max_output_bytes"`
	// Snapshot, when false, starts every instance by running the module's
	// initialiser instead of restoring the version's snapshot (on when left
	// out).
	Snapshot *bool `toml:"snapshot"`
	// IdleRelease: after that long without a call the service's instances
	// are closed and its code leaves resident memory ("0s": never; the
	// daemon's default when left out).
	IdleRelease *Duration `toml:"idle_release"`
}

// Events is the [events] table of a service file.
type Events struct {
	// MaxAttempts is how many times an event is handed to the service
	// before it is dead-lettered; zero takes the bus default.
	MaxAttempts int `toml:"max_attempts"`
	// Serial runs the service's event handlers one at a time, so a handler
	// that reads, decides and writes (a saga step, a read-model update) is
	// never interleaved with another handler of the same service. HTTP
	// handlers still run concurrently.
	Serial bool `toml:"serial"`
	// ReadModelPrefix names the keys that form the service's read model:
	// `meshd events replay` deletes them and rebuilds them by replaying the
	// service's subscribed events, keeping only writes under this prefix.
	ReadModelPrefix string `toml:"read_model_prefix"`
	// ReadModelTypes names the event types whose handlers keep the read
	// model. Their writes must all fall under ReadModelPrefix, and no other
	// handler may write there (a call that breaks either rule fails); so
	// with Serial they run one at a time under a lock of their own, beside
	// the service's other handlers rather than after them.
	ReadModelTypes []string `toml:"read_model_types"`
	// SerialKeys narrows Serial by event type to a field of the event's
	// data (a top-level JSON string): handlers of events whose keys differ
	// may run at once, those of one key run one at a time, and an event
	// with no key (a type not listed, or data without the field) runs
	// alone. A service lists a type when its handler touches only state
	// of that key (an order's, a user's); the read-model handlers keep
	// their own set of locks apart from the others, as with Serial.
	SerialKeys map[string]string `toml:"serial_keys"`
	// AdmissionLag bounds the age of the service's oldest unhandled event:
	// past it, the gateway sheds the requests of the routes that feed the
	// service (503 with Retry-After). Zero takes the daemon's default.
	AdmissionLag Duration `toml:"admission_lag"`
	// AdmissionEvents bounds the service's unhandled events (delivered and
	// not acknowledged, or not delivered yet) the same way. Zero takes the
	// daemon's default.
	AdmissionEvents int `toml:"admission_events"`
	// Admission, when false, keeps the service's lag out of admission: it
	// never sheds a request, however far behind the service falls (a
	// service whose backlog may grow, an audit log, a report). Nil is true.
	Admission *bool `toml:"admission"`
	// Outbox stores the events of a request (or a call) in the same atomic
	// batch as its key writes, as outbox records, and deletes them once
	// they are published: writes stored never go without their events,
	// whatever happens between the two (NATS unreachable, the daemon
	// killed). Records whose publish failed are published by the
	// service's relay, and those a crash left by a scan at the service's
	// start. It costs two JetStream writes per request with writes and
	// events. Event handlers need none: their event comes back.
	Outbox bool `toml:"outbox"`
}

// MaxAdmissionLag is the largest events.admission_lag a service file may
// set: a bound past it would admit work long after business timeouts
// undo it; a service that may lag that far sets admission = false.
const MaxAdmissionLag = time.Hour

// AdmissionOn reports whether the service's lag takes part in admission
// (events.admission, true unless set false).
func (e *Events) AdmissionOn() bool { return e.Admission == nil || *e.Admission }

// ReadModelType reports whether typ is one of e's read-model types.
func (e *Events) ReadModelType(typ string) bool { return slices.Contains(e.ReadModelTypes, typ) }

// Duration is a duration written as a string ("5s", "250ms").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// LoadService reads and checks the service file at path. A missing file
// is an error for which errors.Is(err, fs.ErrNotExist) holds: the caller
// decides what that means (the daemon serves the service, granted
// nothing). Problems are reported as an *Error, each with its key and line.
func LoadService(path string) (*Service, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseService(path, data)
}

// ParseService is LoadService on data read from the file named name. It
// reports every problem at once (unknown keys, bad values) as an *Error.
func ParseService(name string, data []byte) (*Service, error) {
	var s Service
	e, lines, md, ok := decode(name, data, &s)
	if !ok {
		return nil, e
	}
	bad := func(key, format string, args ...any) {
		e.Problems = append(e.Problems, Problem{Key: key, Line: lines.line(key), Msg: fmt.Sprintf(format, args...)})
	}
	l := &s.Limits
	for _, v := range []struct {
		key string
		v   int
	}{{"pool_min", l.PoolMin}, {"pool_max", l.PoolMax}, {"max_calls", l.MaxCalls},
		{"max_input_bytes", l.MaxInputBytes}, {"max_output_bytes", l.MaxOutputBytes}} {
		switch {
		case v.v < 0:
			bad("limits."+v.key, "%d: must not be negative", v.v)
		case v.v == 0 && md.IsDefined("limits", v.key):
			// Zero would silently mean the default: refuse what the operator wrote.
			bad("limits."+v.key, "0: must be at least 1 (leave it out for the default)")
		}
	}
	if l.PoolMax > 0 && l.PoolMin > l.PoolMax {
		bad("limits.pool_min", "%d is above limits.pool_max (%d)", l.PoolMin, l.PoolMax)
	}
	if l.MemoryPages > runtime.MaxMemoryLimitPages || (l.MemoryPages == 0 && md.IsDefined("limits", "memory_pages")) {
		bad("limits.memory_pages", "%d: must be 1 to %d (pages of 64 KiB; %d is the 4 GiB a 32-bit memory can address)",
			l.MemoryPages, runtime.MaxMemoryLimitPages, runtime.MaxMemoryLimitPages)
	}
	if l.TableEntries == 0 && md.IsDefined("limits", "table_entries") {
		bad("limits.table_entries", "0: must be at least 1")
	}
	if l.CallTimeout.Duration < 0 {
		bad("limits.call_timeout", "must not be negative")
	}
	if l.AcquireTimeout.Duration < 0 {
		bad("limits.acquire_timeout", "must not be negative")
	}
	if l.IdleRelease != nil && !ValidIdleRelease(l.IdleRelease.Duration) {
		bad("limits.idle_release", "%v: must be 0s (never) or at least %v", l.IdleRelease.Duration, MinIdleRelease)
	}
	s.Events.check(bad, func(key string) bool { return md.IsDefined("events", key) })
	if s.Events.Outbox && !s.Grants.KV {
		bad("events.outbox", "needs grants.kv = true: the records are kept in the service's store")
	}
	s.checkCalls(bad)
	if len(e.Problems) > 0 {
		sortProblems(e.Problems)
		return nil, e
	}
	return &s, nil
}

// checkCalls reports the problems of the [calls.<callee>] tables.
func (s *Service) checkCalls(bad func(key, format string, args ...any)) {
	for _, callee := range slices.Sorted(maps.Keys(s.Calls)) {
		key := "calls." + callee
		if !abi.ValidServiceName(callee) {
			bad("calls", "%s is not a service name (%s)", abi.Excerpt(callee), abi.ServiceNamePattern)
			continue
		}
		if !slices.Contains(s.Grants.Calls, callee) && !slices.Contains(s.Grants.Calls, "*") {
			bad(key, "the service is not granted calling %s: add it to grants.calls", callee)
		}
		c := s.Calls[callee]
		if d := c.Timeout.Duration; d < 0 || d > MaxCallTimeout {
			bad(key+".timeout", "%v: must be between 0 and %v", d, MaxCallTimeout)
		}
		if err := c.Breaker().Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				field, msg, _ := strings.Cut(line, ": ")
				bad(key+"."+field, "%s", msg)
			}
		}
	}
}

// check reports the problems of an [events] table.
func (c *Events) check(bad func(key, format string, args ...any), defined func(key string) bool) {
	if c.MaxAttempts < 0 {
		bad("events.max_attempts", "must not be negative")
	}
	if len(c.ReadModelTypes) > 0 && c.ReadModelPrefix == "" {
		bad("events.read_model_types", "needs events.read_model_prefix")
	}
	for _, typ := range c.ReadModelTypes {
		if err := abi.ValidEventType(typ); err != nil {
			bad("events.read_model_types", "%s: %v", abi.Excerpt(typ), err)
		}
	}
	switch d := c.AdmissionLag.Duration; {
	case d < 0 || d > MaxAdmissionLag:
		bad("events.admission_lag", "%v: must be between 0 and %v", d, MaxAdmissionLag)
	case d == 0 && defined("admission_lag"):
		bad("events.admission_lag", "0: must be positive (leave it out for the default, or set events.admission = false)")
	}
	switch n := c.AdmissionEvents; {
	case n < 0:
		bad("events.admission_events", "%d: must not be negative", n)
	case n == 0 && defined("admission_events"):
		bad("events.admission_events", "0: must be at least 1 (leave it out for the default, or set events.admission = false)")
	}
	if !c.AdmissionOn() {
		if defined("admission_lag") {
			bad("events.admission_lag", "has no effect with events.admission = false")
		}
		if defined("admission_events") {
			bad("events.admission_events", "has no effect with events.admission = false")
		}
	}
	if len(c.SerialKeys) > 0 && !c.Serial {
		bad("events.serial_keys", "needs events.serial = true")
	}
	for _, typ := range slices.Sorted(maps.Keys(c.SerialKeys)) {
		if err := abi.ValidEventType(typ); err != nil {
			bad("events.serial_keys", "%s: %v", abi.Excerpt(typ), err)
		}
		if c.SerialKeys[typ] == "" {
			bad("events.serial_keys", "%s names no field", abi.Excerpt(typ))
		}
	}
}

// HostGrants converts the file's grants for the host binding.
func (s *Service) HostGrants() host.Grants {
	g := &s.Grants
	return host.Grants{Publish: g.Publish, Subscribe: g.Subscribe, KV: g.KV, Discover: g.Discover, Calls: g.Calls}
}

// ModuleConfig applies the file's limits over base.
func (s *Service) ModuleConfig(base runtime.ModuleConfig) runtime.ModuleConfig {
	l := &s.Limits
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	if l.MemoryPages > 0 {
		base.MemoryLimitPages = l.MemoryPages
	}
	if l.TableEntries > 0 {
		base.MaxTableEntries = l.TableEntries
	}
	if l.CallTimeout.Duration > 0 {
		base.CallTimeout = l.CallTimeout.Duration
	}
	if l.AcquireTimeout.Duration > 0 {
		base.AcquireTimeout = l.AcquireTimeout.Duration
	}
	set(&base.PoolMin, l.PoolMin)
	set(&base.PoolMax, l.PoolMax)
	set(&base.MaxCallsPerInstance, l.MaxCalls)
	set(&base.MaxInputBytes, l.MaxInputBytes)
	set(&base.MaxOutputBytes, l.MaxOutputBytes)
	if l.Snapshot != nil {
		base.DisableSnapshot = !*l.Snapshot
	}
	if l.IdleRelease != nil {
		base.IdleRelease = l.IdleRelease.Duration
	}
	return base
}
