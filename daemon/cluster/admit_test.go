package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
)

// A request another node's gateway forwards here is shed as this node's
// gateway sheds it (admission says the route's pipeline is behind): the
// answer is fault.Overloaded with admission's Retry-After, and the service
// is not invoked. A call from another service (consumer service:...) is
// not shed, nor a request admission lets through.
func TestForwardedRequestShedByAdmission(t *testing.T) {
	var invoked, asked int
	behind := true
	n := &Node{cfg: Config{
		Node: "n2",
		Match: func(service, method, path string) (string, []abi.Pair, bool) {
			return method + " /orders", nil, service == "order"
		},
		Invoke: func(context.Context, string, *abi.Request, *abi.Response) error {
			invoked++
			return nil
		},
		Admit: func(service, route string) (bool, time.Duration) {
			asked++
			return behind && service == "order" && !strings.HasPrefix(route, "GET "), 3 * time.Second
		},
	}}
	h := n.handler("order")
	for _, c := range []struct {
		name     string
		method   string
		consumer string
		behind   bool
		shed     bool
	}{
		{"forwarded POST, behind", "POST", "", true, true},
		{"forwarded POST of a consumer, behind", "POST", "alice", true, true},
		{"forwarded GET, behind", "GET", "", true, false},
		{"call from a service, behind", "POST", "service:user", true, false},
		{"forwarded POST, keeping up", "POST", "", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			invoked, asked, behind = 0, 0, c.behind
			req := &abi.Request{Method: []byte(c.method), Path: []byte("/orders"), Consumer: []byte(c.consumer)}
			err := h(context.Background(), req, &abi.Response{})
			var fe *fault.Error
			switch {
			case c.shed && (!errors.As(err, &fe) || fe.Kind != fault.Overloaded):
				t.Fatalf("error %v, want one of kind %s", err, fault.Overloaded)
			case c.shed && fe.Retry() != 3*time.Second:
				t.Fatalf("Retry-After %v, want admission's 3s", fe.Retry())
			case c.shed && invoked != 0:
				t.Fatal("the service was invoked for a shed request")
			case !c.shed && (err != nil || invoked != 1):
				t.Fatalf("error %v, invoked %d times: want the service invoked once", err, invoked)
			}
			if strings.HasPrefix(c.consumer, abi.ConsumerPrefix) && asked != 0 {
				t.Fatal("admission was asked about a call between services")
			}
		})
	}

	// A node without admission (Admit nil) invokes every request.
	n.cfg.Admit, invoked = nil, 0
	if err := n.handler("order")(context.Background(), &abi.Request{Method: []byte("POST"), Path: []byte("/orders")}, &abi.Response{}); err != nil || invoked != 1 {
		t.Fatalf("without admission: error %v, invoked %d times", err, invoked)
	}
}
