package mesh

import (
	"context"
	"math/rand/v2"

	"github.com/meshd/meshd/abi"
)

// Target is one place a callee can run a call: a local instance pool of one
// version, or another node. Nothing in this package assumes it is local.
type Target interface {
	// Invoke runs req on the callee's HTTP entry point and fills resp. It
	// must return by ctx's deadline (waiting for an instance included),
	// and must neither change req nor keep req or resp after it returns.
	// A failure is an error that fault.Classify understands; a response
	// of any status is not a failure of Invoke.
	Invoke(ctx context.Context, req *abi.Request, resp *abi.Response) error
	// InFlight is how many calls the target is running or holding now.
	InFlight() int
}

// Resolver returns the targets able to serve service now (UP ones only),
// none when there are none. The slice is read, never kept or changed.
type Resolver func(service string) []Target

// pick chooses among ts by power of two choices: two distinct targets at
// random, the one with fewer calls in flight (the first on a tie). It
// spreads load nearly as well as asking every target, at the cost of two,
// and never herds every caller onto the one least loaded target of a
// moment.
func pick(ts []Target) Target {
	n := len(ts)
	if n == 1 {
		return ts[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	if ts[j].InFlight() < ts[i].InFlight() {
		return ts[j]
	}
	return ts[i]
}
