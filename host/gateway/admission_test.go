package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/natsd"
)

// publishInvoker serves every request by publishing one ORDER_CREATED, as
// the order service's POST /orders does, and answering 201.
type publishInvoker struct{ b *bus.Bus }

func (p publishInvoker) InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
	if err := p.b.Publish(ctx, bus.NewEvent(service, "ORDER_CREATED", []byte(`{}`))); err != nil {
		return err
	}
	resp.Status = http.StatusCreated
	return nil
}

// TestAdmissionShedsWhenEventsLag: on a real bus (embedded NATS) and a
// real gateway, POST /orders is admitted while the subscriber of the
// events it publishes keeps up, shed with 503, problem+json and
// Retry-After once that subscriber is past its bound, and admitted again
// once it catches up; a route feeding no lagging service is never shed.
func TestAdmissionShedsWhenEventsLag(t *testing.T) {
	old := bus.LagInterval
	bus.LagInterval = 20 * time.Millisecond
	t.Cleanup(func() { bus.LagInterval = old })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	b, err := bus.New(ctx, ns.JetStream(), bus.Config{Concurrency: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	var stuck atomic.Bool
	stuck.Store(true)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { stuck.Store(false); close(release) })
	defer unblock()
	sub, err := b.Subscribe(ctx, "payment", "ORDER_CREATED", func(context.Context, bus.Event) error {
		if stuck.Load() {
			<-release
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	g := gateway.New(gateway.Config{}, publishInvoker{b}, nil)
	if err := g.SetRoutes([]gateway.Route{
		{Service: "order", Method: "POST", Path: "/orders"},
		{Service: "catalog", Method: "POST", Path: "/items"},
	}); err != nil {
		t.Fatal(err)
	}
	// What the daemon resolves from declarations: a route feeds its own
	// service and the subscribers of the events its service publishes.
	feeds := map[string][]string{"order": {"order", "payment"}, "catalog": {"catalog"}}
	const maxEvents = 5
	g.SetAdmission(func(service, route string) (bool, time.Duration) {
		return b.Behind(feeds[service], func(string) bus.LagBound { return bus.LagBound{MaxEvents: maxEvents, MaxAge: time.Minute} })
	})
	srv := httptest.NewServer(g)
	defer srv.Close()
	post := func(path string) *http.Response {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	admitted := 0
	var shed *http.Response
	for deadline := time.Now().Add(20 * time.Second); shed == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no request shed in 20 s; %d admitted, lag %+v", admitted, b.LagOf("payment"))
		}
		resp := post("/orders")
		switch resp.StatusCode {
		case http.StatusCreated:
			admitted++
			resp.Body.Close()
		case http.StatusServiceUnavailable:
			shed = resp
		default:
			t.Fatalf("POST /orders: %d", resp.StatusCode)
		}
		time.Sleep(5 * time.Millisecond) // a steady client, not a spin
	}
	defer shed.Body.Close()
	var p struct {
		Status int
		Title  string
	}
	if err := json.NewDecoder(shed.Body).Decode(&p); err != nil || p.Status != 503 ||
		shed.Header.Get("Content-Type") != "application/problem+json" || shed.Header.Get("Retry-After") != "1" {
		t.Fatalf("shed answer: %v %+v %q %q", err, p, shed.Header.Get("Content-Type"), shed.Header.Get("Retry-After"))
	}
	if admitted <= maxEvents {
		t.Fatalf("shed after %d admitted, at or under the bound of %d events", admitted, maxEvents)
	}
	// A route whose services keep up is not shed.
	if resp := post("/items"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /items while payment lags: %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	unblock()
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp := post("/orders")
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 20 s after the subscriber caught up; lag %+v", resp.StatusCode, b.LagOf("payment"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shedInvoker answers every request as the node serving its route does
// when admission sheds a request another node's gateway forwarded.
type shedInvoker struct{}

func (shedInvoker) InvokeHTTP(context.Context, string, *abi.Request, *abi.Response) error {
	return &fault.Error{Service: "order", Kind: fault.Overloaded, RetryAfter: 3 * time.Second, Err: errors.New("shed on node n2")}
}

// TestForwardedShedAnswersAsALocalShed: a request the node serving its
// route shed (fault.Overloaded, after the gateway here forwarded it) is
// answered as a request this gateway sheds: 503, problem+json titled
// overloaded, and the serving node's Retry-After.
func TestForwardedShedAnswersAsALocalShed(t *testing.T) {
	g := gateway.New(gateway.Config{}, shedInvoker{}, nil)
	if err := g.SetRoutes([]gateway.Route{{Service: "order", Method: "POST", Path: "/orders"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Title, Detail string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" ||
		resp.Header.Get("Content-Type") != gateway.ProblemContentType || p.Title != "overloaded" || p.Detail != gateway.ShedDetail {
		t.Fatalf("%d, Retry-After %q, %s: %+v; want 503, 3, problem+json titled overloaded",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), p)
	}
}
