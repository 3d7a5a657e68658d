package guest_test

import (
	"errors"
	"fmt"

	"github.com/meshd/meshd/guest"
)

func ExampleAppendProblem() {
	b := guest.AppendProblem(nil, 400, "invalid order", "user_id is required", "user_id is required")
	fmt.Println(string(b))
	// Output: {"type":"about:blank","title":"invalid order","status":400,"detail":"user_id is required","errors":["user_id is required"]}
}

func ExampleKVGet() {
	// Outside WebAssembly the host functions answer with an error.
	_, err := guest.KVGet("order:1")
	fmt.Println(err)
	// Output: guest: unavailable: host functions are only available in wasm (GOOS=wasip1)
}

func ExampleCall() {
	// In a handler of service order, granted calls = ["user"]. Outside
	// WebAssembly the host functions answer with an error.
	resp, err := guest.Call("user", &guest.CallRequest{Method: "GET", Path: "/users/42"})
	switch {
	case errors.Is(err, guest.ErrUnavailable):
		fmt.Println("user is unavailable:", err)
	case err != nil:
		fmt.Println("call failed:", err)
	default:
		fmt.Println(resp.Status, string(resp.Body))
	}
	// Output: user is unavailable: guest: unavailable: host functions are only available in wasm (GOOS=wasip1)
}
