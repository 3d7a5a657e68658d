package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/fault"
)

// checkProblem checks that an answer is a problem document with status
// and returns it.
func checkProblem(t *testing.T, code int, header http.Header, body string, status int) map[string]any {
	t.Helper()
	if code != status {
		t.Fatalf("status %d, want %d; body %s", code, status, body)
	}
	if ct := header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type %q, want %q; body %s", ct, ProblemContentType, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("problem is not JSON: %v; %s", err, body)
	}
	if doc["type"] != "about:blank" || doc["status"] != float64(status) || doc["title"] == "" || doc["title"] == nil {
		t.Fatalf("problem %v: want type about:blank, status %d, a title", doc, status)
	}
	return doc
}

// waitJob polls GET /v1/jobs/{id} until the job is not running, for up to
// 20 s, and returns it.
func waitJob(t *testing.T, addr, id string) Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, body := send(t, addr, "GET", "/v1/jobs/"+id, "", nil)
		if code != 200 {
			t.Fatalf("GET /v1/jobs/%s: %d %s", id, code, body)
		}
		var job Job
		if err := json.Unmarshal([]byte(body), &job); err != nil {
			t.Fatal(err)
		}
		if job.State != JobRunning {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still running after 20 s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startJobServer starts a listener with POST /v1/replay starting fn as a
// "replay" job of the service named by ?service=.
func startJobServer(t *testing.T, fn JobFunc) (*Server, string) {
	t.Helper()
	s := start(t, Config{Addr: "127.0.0.1:0"}, Source{})
	s.Handle("POST /v1/replay", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Jobs().StartHTTP(w, "replay", r.URL.Query().Get("service"), fn)
	}))
	return s, s.Addr()
}

// TestJobOutlivesItsRequest: a job keeps running after the request that
// started it returned and its client went away, on a context of its own,
// and its status moves from running to succeeded.
func TestJobOutlivesItsRequest(t *testing.T) {
	release := make(chan struct{})
	ctxErr := make(chan error, 1)
	_, addr := startJobServer(t, func(ctx context.Context) (any, error) {
		<-release
		ctxErr <- ctx.Err()
		return map[string]int{"dropped": 3, "events": 7}, nil
	})

	// The client sends the request and hangs up once answered.
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/replay?service=order", nil)
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var started Job
	err = json.NewDecoder(resp.Body).Decode(&started)
	resp.Body.Close()
	cancel()
	tr.CloseIdleConnections()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start: %d %v", resp.StatusCode, err)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/jobs/"+started.ID || started.ID == "" {
		t.Fatalf("Location %q, job %+v", loc, started)
	}
	if started.State != JobRunning || started.Kind != "replay" || started.Service != "order" || started.Started.IsZero() {
		t.Fatalf("started job %+v", started)
	}

	// Still running after the client left.
	code, _, body := send(t, addr, "GET", "/v1/jobs/"+started.ID, "", nil)
	if code != 200 || !strings.Contains(body, `"state": "running"`) || strings.Contains(body, "finished") {
		t.Fatalf("job while running: %d %s", code, body)
	}
	close(release)
	if err := <-ctxErr; err != nil {
		t.Fatalf("the job's context was cancelled with its request: %v", err)
	}
	job := waitJob(t, addr, started.ID)
	if job.State != JobSucceeded || job.Finished.Before(job.Started) || job.Error != "" {
		t.Fatalf("finished job %+v", job)
	}
	if res, _ := job.Result.(map[string]any); res["dropped"] != float64(3) || res["events"] != float64(7) {
		t.Fatalf("result %v", job.Result)
	}
}

// TestJobConflict: a second start of the same kind for the same service
// while the first runs answers 409 with the running job's id; another
// service's job starts; once the first ended, a new one starts.
func TestJobConflict(t *testing.T) {
	release := make(chan struct{})
	s, addr := startJobServer(t, func(ctx context.Context) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	code, _, body := send(t, addr, "POST", "/v1/replay?service=order", "", nil)
	var first Job
	if err := json.Unmarshal([]byte(body), &first); code != 202 || err != nil {
		t.Fatalf("first start: %d %s", code, body)
	}
	code, h, body := send(t, addr, "POST", "/v1/replay?service=order", "", nil)
	doc := checkProblem(t, code, h, body, http.StatusConflict)
	if doc["job"] != first.ID || h.Get("Location") != "/v1/jobs/"+first.ID || !strings.Contains(doc["detail"].(string), "already running") {
		t.Fatalf("409 %v (Location %q), want job %s", doc, h.Get("Location"), first.ID)
	}
	if code, _, body := send(t, addr, "POST", "/v1/replay?service=payment", "", nil); code != 202 {
		t.Fatalf("another service's job: %d %s", code, body)
	}
	close(release)
	waitJob(t, addr, first.ID)
	if code, _, body := send(t, addr, "POST", "/v1/replay?service=order", "", nil); code != 202 {
		t.Fatalf("start after the first ended: %d %s", code, body)
	}
	// Direct use: the conflict is a fault.Conflict wrapping ErrJobRunning.
	block := make(chan struct{})
	defer close(block)
	id, err := s.Jobs().Start("rebuild", "x", func(context.Context) (any, error) { <-block; return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	id2, err := s.Jobs().Start("rebuild", "x", func(context.Context) (any, error) { return nil, nil })
	var fe *fault.Error
	if id2 != id || !errors.As(err, &fe) || fe.Kind != fault.Conflict || !errors.Is(err, ErrJobRunning) {
		t.Fatalf("second Start = %q, %v; want %q and a conflict", id2, err, id)
	}
}

// TestJobFails: a job whose function fails, or panics, ends failed with
// the reason.
func TestJobFails(t *testing.T) {
	jobs := NewJobs(nil)
	defer jobs.Close(t.Context())
	for _, c := range []struct {
		name string
		fn   JobFunc
		want string
	}{
		{"error", func(context.Context) (any, error) {
			return nil, errors.New("dropping the read model of order: disk full")
		}, "disk full"},
		{"panic", func(context.Context) (any, error) { panic("boom") }, "panicked: boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := jobs.Start(c.name, "order", c.fn)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				job, ok := jobs.Get(id)
				if !ok {
					t.Fatal("job forgotten")
				}
				if job.State != JobRunning {
					if job.State != JobFailed || !strings.Contains(job.Error, c.want) || job.Result != nil || job.Finished.IsZero() {
						t.Fatalf("job %+v, want failed with %q", job, c.want)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("job still running after 20 s")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestJobsCloseCancels: Close cancels a running job's context, waits for
// it, and refuses new jobs with 503.
func TestJobsCloseCancels(t *testing.T) {
	jobs := NewJobs(nil)
	started := make(chan struct{})
	ended := make(chan struct{})
	if _, err := jobs.Start("replay", "order", func(ctx context.Context) (any, error) {
		close(started)
		<-ctx.Done()
		close(ended)
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := jobs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("Close returned before the job did")
	}
	if err := jobs.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := jobs.Start("replay", "order", func(context.Context) (any, error) { return nil, nil })
	if !errors.Is(err, ErrJobsClosed) || StatusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("Start after Close: %v (status %d)", err, StatusOf(err))
	}
	w := httptest.NewRecorder()
	jobs.StartHTTP(w, "replay", "order", func(context.Context) (any, error) { return nil, nil })
	checkProblem(t, w.Code, w.Header(), w.Body.String(), http.StatusServiceUnavailable)
}

// TestJobsAreBounded: past MaxJobs, the oldest finished jobs are
// forgotten (and answer 404); a running one is kept however old.
func TestJobsAreBounded(t *testing.T) {
	jobs := NewJobs(nil)
	defer jobs.Close(t.Context())
	block := make(chan struct{})
	defer close(block)
	oldest, err := jobs.Start("long", "", func(context.Context) (any, error) { <-block; return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range MaxJobs + 20 {
		id, err := jobs.Start("quick", fmt.Sprint(i), func(context.Context) (any, error) { return i, nil })
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		deadline := time.Now().Add(20 * time.Second)
		for job, _ := jobs.Get(id); job.State == JobRunning; job, _ = jobs.Get(id) {
			if time.Now().After(deadline) {
				t.Fatal("job still running after 20 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := len(jobs.List()); n != MaxJobs {
		t.Fatalf("%d jobs kept, want %d", n, MaxJobs)
	}
	if _, ok := jobs.Get(oldest); !ok {
		t.Fatal("the running job was forgotten")
	}
	if _, ok := jobs.Get(ids[0]); ok {
		t.Fatal("the oldest finished job is still kept")
	}
	if job, ok := jobs.Get(ids[len(ids)-1]); !ok || job.Result != len(ids)-1 {
		t.Fatalf("the newest job: %+v %v", job, ok)
	}
	r := httptest.NewRequest("GET", "/v1/jobs/"+ids[0], nil)
	r.SetPathValue("id", ids[0])
	w := httptest.NewRecorder()
	jobs.handleGet(w, r)
	checkProblem(t, w.Code, w.Header(), w.Body.String(), http.StatusNotFound)
}
