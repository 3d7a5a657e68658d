package fault_test

import (
	"errors"
	"fmt"

	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/runtime"
)

func ExampleClassify() {
	// What runtime.Module.Invoke returns when every instance stays busy.
	err := fmt.Errorf("orders: 4 instances busy for 1s: %w", runtime.ErrBusy)

	fe := fault.Classify("orders", err)
	fmt.Println(fe.Kind, fe.Status(), fe.Kind.Code(), fe.Retry())
	fmt.Println(errors.Is(fe, runtime.ErrBusy))
	fmt.Println(fe)
	// Output:
	// busy 503 unavailable 1s
	// true
	// service orders: busy: orders: 4 instances busy for 1s: runtime: all instances busy
}
