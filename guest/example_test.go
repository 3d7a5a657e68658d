package guest_test

import (
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
