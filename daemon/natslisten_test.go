package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/internal/testkit"
)

// TestNATSListenRefusedWithoutCredentials: a NATS client port without
// credentials does not start.
func TestNATSListenRefusedWithoutCredentials(t *testing.T) {
	cfg := Default()
	cfg.PluginDir = t.TempDir()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.NATSListen = "127.0.0.1:0"
	_, err := New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a NATS client port without credentials was accepted")
	}
	if !strings.Contains(err.Error(), "nats-listen: a NATS client port needs credentials") {
		t.Fatalf("error does not say what is missing: %v", err)
	}
}

// TestNATSListenClientCannotPayAnOrder is the reproduction: a client on
// the NATS port publishes PAYMENT_COMPLETED for an order the payment
// service declines. Without credentials it is refused; with the
// operator's credentials and no grants its publish is refused, and the
// order is cancelled, not paid. meshd's own services keep working over the
// same server (an order under the limit is paid: events published,
// consumed, state written).
func TestNATSListenClientCannotPayAnOrder(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, func(c *Config) {
		c.NATSListen = "127.0.0.1:0"
		c.NATSAuth.User, c.NATSAuth.Password = "tool", "s3cret-for-tools"
	})
	url := td.nats.ClientURL()
	if url == "" {
		t.Fatal("no client URL")
	}

	r := td.do(t, "POST", "/orders", "application/json", orderBody)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	paid, _ := r.json(t)["id"].(string)
	testkit.Eventually(t, 20*time.Second, func() string {
		if m := td.do(t, "GET", "/orders/"+paid, "", "").json(t); m["status"] != "PAID" {
			return fmt.Sprintf("order under the limit: %v", m["status"])
		}
		return ""
	})

	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("without credentials: %v, want an authorization error", err)
	}

	errs := make(chan error, 16)
	nc, err := nats.Connect(url, nats.UserInfo("tool", "s3cret-for-tools"), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("with the operator's credentials: %v", err)
	}
	defer nc.Close()

	r = td.do(t, "POST", "/orders", "application/json", `{"user_id":"u","items":[{"name":"yacht","price":9000000}]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	unpaid, _ := r.json(t)["id"].(string)
	forged := &nats.Msg{Subject: "meshd.events.PAYMENT_COMPLETED", Header: nats.Header{},
		Data: fmt.Appendf(nil, `{"order_id":%q,"payment_id":"forged","amount":9000000}`, unpaid)}
	forged.Header.Set("Ce-Id", "forged-1")
	forged.Header.Set("Ce-Type", "PAYMENT_COMPLETED")
	forged.Header.Set("Ce-Source", "payment")
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "PAYMENT_COMPLETED") {
			t.Fatalf("the forged event: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the forged event was not refused")
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if m := td.do(t, "GET", "/orders/"+unpaid, "", "").json(t); m["status"] != "CANCELLED" {
			return fmt.Sprintf("order over the limit: %v, want CANCELLED", m["status"])
		}
		return ""
	})
	if n := td.eventsStored(t, "PAYMENT_COMPLETED"); n != 1 {
		t.Fatalf("%d PAYMENT_COMPLETED events stored, want the one payment published", n)
	}
}
