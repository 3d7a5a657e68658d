package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/mesh"
)

// users is a Target standing in for an instance pool of the user service.
type users struct{ up bool }

func (u *users) Invoke(_ context.Context, req *abi.Request, resp *abi.Response) error {
	if !u.up {
		return fault.New("user", fault.Unavailable, errors.New("draining"))
	}
	resp.Status = 200
	resp.Body = append(resp.Body[:0], "hello "+string(req.Consumer)...)
	return nil
}

func (u *users) InFlight() int { return 0 }

func Example() {
	u := &users{up: true}
	c, err := mesh.New(func(service string) []mesh.Target {
		if service == "user" {
			return []mesh.Target{u}
		}
		return nil
	}, mesh.WithLogger(slog.New(slog.DiscardHandler)),
		mesh.WithBreakerSettings("user", mesh.Settings{ConsecutiveFailures: 2}),
		mesh.WithMaxAttempts(1))
	if err != nil {
		panic(err)
	}
	call := func() {
		var resp abi.Response
		req := &abi.Request{Method: []byte("GET"), Path: []byte("/users/7")}
		err := c.Call(context.Background(), "order", "user", req, &resp, mesh.CallOptions{RequestID: "r1"})
		var fe *fault.Error
		switch {
		case err == nil:
			fmt.Println(resp.Status, string(resp.Body))
		case errors.As(err, &fe):
			fmt.Printf("%v (ABI code %d): %v\n", fe.Kind, fe.Kind.Code(), errors.Unwrap(err))
		}
	}
	call()
	u.up = false
	call()
	call()
	call() // the breaker is open: user is not called
	fmt.Println(c.Snapshot()[0].State)
	fmt.Println(mesh.DepthFrom(mesh.WithDepth(context.Background(), 3)))
	// Output:
	// 200 hello service:order
	// unavailable (ABI code 6): draining
	// unavailable (ABI code 6): draining
	// circuit open (ABI code 6): circuit order→user open
	// open
	// 3
}
