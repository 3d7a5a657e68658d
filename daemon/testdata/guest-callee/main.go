// Command guest-callee is a test guest of daemon/calls_test.go (see
// daemon/testdata/meshguest); `make fixtures` builds it into
// daemon/testdata/guest-callee.wasm. Beside meshguest's routes it serves
//
//	GET /callee/noop   answers 200 {} and does nothing else: the callee of
//	     daemon/calls_bench_test.go
package main

import (
	"github.com/meshd/meshd/daemon/testdata/meshguest"
	"github.com/meshd/meshd/guest"
)

func init() {
	meshguest.Register("callee")
	guest.Handle("GET /callee/noop", func(w *guest.ResponseWriter, r *guest.Request) {
		w.JSON(200, []byte(`{}`))
	})
}

func main() {}
