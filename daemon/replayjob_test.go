package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/daemon/dispatch"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/internal/testkit"
)

// adminReq sends a request to the admin listener.
func (td *testDaemon) adminReq(t testing.TB, method, path string) reply {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+td.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// job is GET /v1/jobs/{id}.
func (td *testDaemon) job(t testing.TB, id string) admin.Job {
	t.Helper()
	r := td.adminReq(t, "GET", "/v1/jobs/"+id)
	if r.status != 200 {
		t.Fatalf("job %s: %d %s", id, r.status, r.body)
	}
	var j admin.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// The events admin API's mistakes are answered at once as problems (4xx),
// never as jobs.
func TestReplayRequestMistakes(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	for _, tc := range []struct {
		path   string
		status int
		detail string
	}{
		{"/v1/events/replay", 400, "?service=NAME"},
		{"/v1/events/replay?service=" + strings.Repeat("x", 300), 400, "not a service name"},
		{"/v1/events/replay?service=nope", 404, "not loaded"},
		{"/v1/events/replay?service=payment", 400, "read_model_prefix"},
		{"/v1/events/dlq/redrive", 400, "?service=NAME"},
	} {
		r := td.adminReq(t, "POST", tc.path)
		wantProblem(t, r, tc.status, tc.detail)
	}
	wantProblem(t, td.adminReq(t, "GET", "/v1/events/dlq"), 400, "?service=NAME")
	if jobs := td.obs.admin.server.Jobs().List(); len(jobs) != 0 {
		t.Fatalf("a mistake started jobs: %+v", jobs)
	}
}

// A replay is a job: a second start while one runs for the service is 409
// naming the running job; one started by a client that hangs up at once
// still runs to the end, and the read model ends rebuilt as it was.
func TestReplayJobOutlivesItsClient(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	const n = 100
	tally := testkit.Hammer(context.Background(), t, testkit.Load{Workers: 8, Calls: n, For: 60 * time.Second},
		func(ctx context.Context, i int) error {
			return td.postOrder(ctx, fmt.Sprintf(`{"user_id":"rj","items":[{"name":"x","price":%d}]}`, 1000+i))
		})
	if tally.Calls != n || tally.Failed != 0 {
		t.Fatalf("orders: %+v", tally)
	}
	testkit.Eventually(t, 60*time.Second, func() string {
		paid := 0
		for _, o := range td.userOrders(t, "rj") {
			if o.Status == "PAID" {
				paid++
			}
		}
		if paid != n {
			return fmt.Sprintf("%d of %d orders PAID", paid, n)
		}
		return ""
	})
	before := td.do(t, "GET", "/users/rj/orders?limit=1000", "", "").body

	// A replay of order already running: 409 with its id, nothing started.
	jobs := td.obs.admin.server.Jobs()
	release := make(chan struct{})
	blocker, err := jobs.Start(dispatch.JobReplay, "order", func(ctx context.Context) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := td.adminReq(t, "POST", "/v1/events/replay?service=order")
	wantProblem(t, r, 409, "already running")
	if got := r.json(t)["job"]; got != blocker || r.header.Get("Location") != "/v1/jobs/"+blocker {
		t.Fatalf("409 names job %v at %q, want %s", got, r.header.Get("Location"), blocker)
	}
	close(release)
	testkit.Until(t, 20*time.Second, "the blocking job ends", func() bool { return td.job(t, blocker).State != admin.JobRunning })

	// The client sends the request and hangs up without reading.
	conn, err := net.Dial("tcp", td.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/events/replay?service=order HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", td.AdminAddr())
	conn.Close()

	var replay admin.Job
	testkit.Eventually(t, 60*time.Second, func() string {
		for _, j := range jobs.List() {
			if j.ID != blocker && j.Kind == dispatch.JobReplay && j.Service == "order" {
				replay = td.job(t, j.ID)
				if replay.State == admin.JobRunning {
					return "replay job " + j.ID + " still running"
				}
				return ""
			}
		}
		return "no replay job started"
	})
	if replay.State != admin.JobSucceeded {
		t.Fatalf("replay job %+v", replay)
	}
	res, _ := json.Marshal(replay.Result)
	var rr dispatch.ReplayResult
	if err := json.Unmarshal(res, &rr); err != nil || rr.Service != "order" || rr.Dropped < n || rr.Events < 2*n {
		t.Fatalf("replay result %s (%v), want >= %d keys dropped and >= %d events", res, err, n, 2*n)
	}
	if got := td.do(t, "GET", "/users/rj/orders?limit=1000", "", "").body; string(got) != string(before) {
		t.Fatalf("rebuilt read model differs:\n%s\nwant\n%s", got, before)
	}
}
