package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/meshd/meshd/host/fault"
)

// JobState is where a job is: running, then succeeded or failed.
type JobState string

// Job states.
const (
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
)

// MaxJobs bounds the jobs kept: past it, the oldest finished job is
// forgotten. Running jobs are always kept (at most one per kind and
// service).
const MaxJobs = 100

// maxJobErrorBytes bounds a failed job's error message.
const maxJobErrorBytes = 4096

// Errors of Jobs.Start.
var (
	// ErrJobRunning: a job of the same kind for the same service is
	// running. Start returns it inside a *fault.Error of kind
	// fault.Conflict (409), with the running job's id.
	ErrJobRunning = errors.New("admin: a job of this kind is already running for the service")
	// ErrJobsClosed: Close was called. Inside a *fault.Error of kind
	// fault.Unavailable (503).
	ErrJobsClosed = errors.New("admin: jobs closed")
)

// Job is a long admin operation as GET /v1/jobs/{id} shows it.
type Job struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Service string   `json:"service,omitempty"`
	State   JobState `json:"state"`
	// Started and Finished are in UTC; Finished is absent while running.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Result is what the job's function returned, when it succeeded.
	Result any `json:"result,omitempty"`
	// Error is why it failed (cut to 4 KiB).
	Error string `json:"error,omitempty"`
}

// JobFunc is a job's work. ctx is the job's own: it is cancelled only by
// Jobs.Close, never by the HTTP request that started the job or by its
// client going away. result must encode as JSON.
type JobFunc func(ctx context.Context) (result any, err error)

// Jobs runs long admin operations (a read-model replay, which drops then
// rebuilds, must not be cut by a request's write timeout or a client that
// hangs up) in the background, one at a time per kind and service, and
// keeps their outcome for GET /v1/jobs/{id}. The admin Server owns one
// (Server.Jobs); it is safe for concurrent use.
type Jobs struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	closed  bool
	jobs    map[string]*Job      // by id
	order   []string             // ids, oldest first
	running map[[2]string]string // (kind, service) → id of its running job
}

// NewJobs returns an empty job runner. A nil log discards logs.
func NewJobs(log *slog.Logger) *Jobs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Jobs{log: log, ctx: ctx, cancel: cancel, jobs: make(map[string]*Job), running: make(map[[2]string]string)}
}

// Start runs fn as a job of kind for service (which may be empty) and
// returns its id at once. While a job of the same kind and service runs,
// Start starts nothing and returns that job's id with a *fault.Error of
// kind fault.Conflict wrapping ErrJobRunning; after Close, "" and a
// fault.Unavailable wrapping ErrJobsClosed. A panic in fn fails the job.
func (j *Jobs) Start(kind, service string, fn JobFunc) (id string, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return "", &fault.Error{Service: service, Kind: fault.Unavailable, Err: ErrJobsClosed}
	}
	key := [2]string{kind, service}
	if id, ok := j.running[key]; ok {
		return id, &fault.Error{Service: service, Kind: fault.Conflict, Err: fmt.Errorf("%w: job %s (%s)", ErrJobRunning, id, kind)}
	}
	id = newJobID()
	job := &Job{ID: id, Kind: kind, Service: service, State: JobRunning, Started: time.Now().UTC()}
	j.jobs[id] = job
	j.order = append(j.order, id)
	j.running[key] = id
	j.evictLocked()
	j.wg.Add(1)
	go j.run(job, key, fn)
	return id, nil
}

// run runs one job and records its outcome.
func (j *Jobs) run(job *Job, key [2]string, fn JobFunc) {
	defer j.wg.Done()
	start := time.Now()
	j.log.LogAttrs(j.ctx, slog.LevelInfo, "admin: job started",
		slog.String("job", job.ID), slog.String("kind", job.Kind), slog.String("service", job.Service))
	result, err := call(j.ctx, fn)
	j.mu.Lock()
	job.Finished = time.Now().UTC()
	if err != nil {
		job.State, job.Error = JobFailed, cut(err.Error(), maxJobErrorBytes)
	} else {
		job.State, job.Result = JobSucceeded, result
	}
	delete(j.running, key)
	j.evictLocked()
	j.mu.Unlock()
	level, attrs := slog.LevelInfo, []slog.Attr{slog.String("job", job.ID), slog.String("kind", job.Kind),
		slog.String("service", job.Service), slog.Duration("duration", time.Since(start))}
	if err != nil {
		level, attrs = slog.LevelError, append(attrs, slog.String("error", job.Error))
	}
	j.log.LogAttrs(j.ctx, level, "admin: job finished", attrs...)
}

// call runs fn, turning a panic into an error.
func call(ctx context.Context, fn JobFunc) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, fmt.Errorf("admin: job panicked: %v", p)
		}
	}()
	return fn(ctx)
}

// evictLocked forgets the oldest finished jobs past MaxJobs.
func (j *Jobs) evictLocked() {
	for i := 0; len(j.order) > MaxJobs && i < len(j.order); {
		id := j.order[i]
		if j.jobs[id].State == JobRunning {
			i++
			continue
		}
		delete(j.jobs, id)
		j.order = slices.Delete(j.order, i, i+1)
	}
}

// Get returns a copy of the job with this id.
func (j *Jobs) Get(id string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *job, true
}

// List returns copies of the jobs kept, oldest first.
func (j *Jobs) List() []Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Job, 0, len(j.order))
	for _, id := range j.order {
		out = append(out, *j.jobs[id])
	}
	return out
}

// Close refuses new jobs, cancels the context of the running ones and
// waits for them to return, until ctx is done. It is idempotent.
func (j *Jobs) Close(ctx context.Context) error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	done := make(chan struct{})
	go func() {
		j.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("admin: jobs still running at close: %w", ctx.Err())
	}
}

// StartHTTP starts fn as Start does and answers the request: 202 Accepted
// with Location /v1/jobs/{id} and the job; 409 problem+json with the
// running job's id (member "job") and its Location when one of the same
// kind and service runs; 503 after Close. The job outlives the request.
func (j *Jobs) StartHTTP(w http.ResponseWriter, kind, service string, fn JobFunc) {
	id, err := j.Start(kind, service, fn)
	if err != nil {
		var extra map[string]any
		if id != "" {
			w.Header().Set("Location", jobPath(id))
			extra = map[string]any{"job": id}
		}
		status := StatusOf(err)
		writeProblem(w, status, Title(status), err.Error(), extra)
		return
	}
	job, _ := j.Get(id)
	w.Header().Set("Location", jobPath(id))
	writeJSON(w, http.StatusAccepted, job)
}

// handleGet is GET /v1/jobs/{id}.
func (j *Jobs) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	job, ok := j.Get(id)
	if !ok {
		Problem(w, http.StatusNotFound, Title(http.StatusNotFound),
			fmt.Sprintf("no job %q: unknown, or forgotten (the last %d are kept)", bound(id), MaxJobs))
		return
	}
	writeJSON(w, http.StatusOK, job)
}

// handleList is GET /v1/jobs.
func (j *Jobs) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Jobs []Job `json:"jobs"`
	}{j.List()})
}

func jobPath(id string) string { return "/v1/jobs/" + id }

// newJobID returns 16 random hex digits.
func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// writeJSON writes v as indented JSON with status; a v json cannot encode
// is a 500 problem.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		Problem(w, http.StatusInternalServerError, Title(http.StatusInternalServerError),
			"the answer could not be encoded: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
