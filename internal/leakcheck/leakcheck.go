// Package leakcheck fails a test binary whose tests passed but left
// goroutines running: a TestMain helper around go.uber.org/goleak.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Wait is how long Main lets goroutines that are already stopping end: a
// goroutine whose owner's Close returned may still be on its way out (an
// HTTP client's connection reader sees the server's close a moment later),
// and a 2-core machine under load is slow to run it. goleak alone retries
// for about half a second.
const Wait = 10 * time.Second

// Main runs the tests, then, when they passed, looks for goroutines other
// than the ones goleak ignores by default and those opts ignore, polling
// until Wait has passed. It then calls cleanup (if not nil) and exits with
// the tests' code, or 1 with the goroutines' stacks on stderr.
func Main(m *testing.M, cleanup func(), opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := find(Wait, opts...); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: the tests passed but left goroutines running: %v\n", err)
			code = 1
		}
	}
	if cleanup != nil {
		cleanup()
	}
	os.Exit(code)
}

// find is goleak.Find retried until it finds nothing or wait has passed.
func find(wait time.Duration, opts ...goleak.Option) error {
	deadline := time.Now().Add(wait)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
