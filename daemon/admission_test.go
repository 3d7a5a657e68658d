package daemon

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/internal/testkit"
)

// A subscriber that falls behind sheds the requests of the routes that
// feed it, 503 with Retry-After, and only those: payment's consumer of
// ORDER_CREATED is paused on the server, so POST /orders (order publishes
// ORDER_CREATED) is shed once payment's oldest unhandled event is older
// than its admission_lag; GET /orders/{id}, POST /users and the
// conformance guest's POST are not. Resumed, payment catches up, POST
// /orders is admitted again and every order accepted before settles PAID.
func TestAdmissionShedsRoutesFeedingALaggingService(t *testing.T) {
	defer func(v time.Duration) { bus.LagInterval = v }(bus.LagInterval)
	bus.LagInterval = 50 * time.Millisecond
	src, err := os.ReadFile(fixture(t, filepath.Join("..", "build", "plugins", "payment.toml")))
	if err != nil {
		t.Fatal(err)
	}
	payment := strings.Replace(string(src), "[events]\n", "[events]\nadmission_lag = \"300ms\"\n", 1)
	if payment == string(src) {
		t.Fatal("payment.toml has no [events] table to add admission_lag to")
	}
	td := startDaemonWith(t, []string{"order", "payment", "user", "conformance"},
		map[string][]byte{"payment.toml": []byte(payment)}, nil)
	js := td.nats.JetStream()
	stream := td.cfg.Events.Stream
	if stream == "" {
		stream = bus.DefaultStream
	}
	consumer := bus.ConsumerName("payment", "ORDER_CREATED")
	ctx := t.Context()

	var accepted []string
	post := func() reply {
		r := td.do(t, "POST", "/orders", "application/json", orderBody)
		if r.status == http.StatusCreated {
			accepted = append(accepted, r.json(t)["id"].(string))
		}
		return r
	}
	if r := post(); r.status != http.StatusCreated {
		t.Fatalf("POST /orders before any lag: %d %s", r.status, r.body)
	}

	if _, err := js.PauseConsumer(ctx, stream, consumer, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("pausing payment's consumer: %v", err)
	}
	var shed reply
	testkit.Eventually(t, 20*time.Second, func() string {
		shed = post()
		if shed.status != http.StatusServiceUnavailable {
			return fmt.Sprintf("POST /orders with payment paused: %d, want 503", shed.status)
		}
		return ""
	})
	wantProblem(t, shed, http.StatusServiceUnavailable, "events behind this route")
	if s, err := strconv.Atoi(shed.header.Get("Retry-After")); err != nil || s < 1 || s > 30 {
		t.Fatalf("Retry-After %q: want 1 to 30 seconds", shed.header.Get("Retry-After"))
	}

	// Not shed: a safe method on the same service, routes that do not feed
	// payment.
	if r := td.do(t, "GET", "/orders/"+accepted[0], "", ""); r.status != http.StatusOK {
		t.Errorf("GET /orders/{id} while payment lags: %d %s", r.status, r.body)
	}
	if r := td.do(t, "POST", "/users", "application/json", `{"id":"kim","name":"Kim"}`); r.status >= 500 {
		t.Errorf("POST /users while payment lags: %d %s", r.status, r.body)
	}
	if r := td.do(t, "POST", "/wat/echo", "application/json", `{}`); r.status >= 500 {
		t.Errorf("POST /wat/echo while payment lags: %d %s", r.status, r.body)
	}
	if r := post(); r.status != http.StatusServiceUnavailable {
		t.Errorf("POST /orders again while payment lags: %d, want 503", r.status)
	}

	if _, err := js.ResumeConsumer(ctx, stream, consumer); err != nil {
		t.Fatalf("resuming payment's consumer: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if r := post(); r.status != http.StatusCreated {
			return fmt.Sprintf("POST /orders after payment resumed: %d %s", r.status, r.body)
		}
		return ""
	})
	for _, id := range accepted {
		testkit.Eventually(t, 20*time.Second, func() string {
			r := td.do(t, "GET", "/orders/"+id, "", "")
			if st := r.json(t)["status"]; st != "PAID" {
				return fmt.Sprintf("order %s accepted before the lag is %v, want PAID", id, st)
			}
			return ""
		})
	}
}
