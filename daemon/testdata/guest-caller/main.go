// Command guest-caller is a test guest of daemon/calls_test.go (see
// daemon/testdata/meshguest); `make fixtures` builds it into
// daemon/testdata/guest-caller.wasm.
package main

import "github.com/meshd/meshd/daemon/testdata/meshguest"

func init() { meshguest.Register("caller") }

func main() {}
