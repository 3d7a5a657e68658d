package cluster

import (
	"context"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/registry"
)

// recorder is a gateway.Invoker or Forward that records which was used.
type recorder struct{ local, forwarded int }

func (r *recorder) InvokeHTTP(context.Context, string, *abi.Request, *abi.Response) error {
	r.local++
	return nil
}

func (r *recorder) forward(context.Context, string, string, *abi.Request, *abi.Response) error {
	r.forwarded++
	return nil
}

// A service this node knows but does not serve UP (refused at load, DOWN,
// drained) is forwarded when another node serves it, and answered here
// when none does; one UP here is always served here.
func TestInvokerForwardsPastALocalServiceNotUp(t *testing.T) {
	for _, c := range []struct {
		name      string
		status    registry.Status
		elsewhere bool
		want      string
	}{
		{"up here, served elsewhere too", registry.Up, true, "local"},
		{"down here, served elsewhere", registry.Down, true, "forwarded"},
		{"drained here, served elsewhere", registry.OutOfService, true, "forwarded"},
		{"starting here, served elsewhere", registry.Starting, true, "forwarded"},
		{"down here, served nowhere else", registry.Down, false, "local"},
		{"unknown here", "", true, "forwarded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := registry.New()
			if c.status != "" {
				reg.Register(registry.Instance{Service: "order", Version: "v1", Node: "n1", Status: c.status})
			}
			rec := &recorder{}
			inv := NewInvoker(rec, reg)
			inv.SetForward(rec.forward, func(s string) bool { return s == "order" && c.elsewhere })
			if err := inv.InvokeHTTP(context.Background(), "order", &abi.Request{}, &abi.Response{}); err != nil {
				t.Fatal(err)
			}
			got := "local"
			if rec.forwarded == 1 {
				got = "forwarded"
			}
			if got != c.want || rec.local+rec.forwarded != 1 {
				t.Fatalf("%s (local %d, forwarded %d), want %s", got, rec.local, rec.forwarded, c.want)
			}
		})
	}
}
