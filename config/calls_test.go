package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestServiceCalls(t *testing.T) {
	s, err := ParseService("user.toml", []byte(`
[grants]
calls = ["order"]

[calls.order]
timeout = "300ms"
consecutive_failures = 3
open_for = "2s"
`))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Calls["order"]
	if c.Timeout.Duration != 300*time.Millisecond {
		t.Errorf("timeout %v", c.Timeout)
	}
	if b := c.Breaker(); b.ConsecutiveFailures != 3 || b.OpenFor != 2*time.Second || b.Probes != 0 {
		t.Errorf("breaker %+v", b)
	}
}

// Every problem of the [calls.<callee>] tables is reported with its key
// and line.
func TestServiceCallsProblems(t *testing.T) {
	_, err := ParseService("user.toml", []byte(`[grants]
calls = ["order"]

[calls.order]
timeout = "-1s"
failure_ratio = 1.5
probes = 1000

[calls.payment]
open_for = "1s"
`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want *Error", err)
	}
	want := []struct {
		key  string
		line int
		has  string
	}{
		{"calls.order.timeout", 5, "between 0"},
		{"calls.order.failure_ratio", 6, "between 0 and 1"},
		{"calls.order.probes", 7, "more than 100"},
		{"calls.payment", 9, "grants.calls"},
	}
	if len(e.Problems) != len(want) {
		t.Fatalf("problems %v, want %d", e.Problems, len(want))
	}
	for _, w := range want {
		found := false
		for _, p := range e.Problems {
			if p.Key == w.key && strings.Contains(p.Msg, w.has) {
				found = true
				if p.Line != w.line {
					t.Errorf("%s: line %d, want %d", w.key, p.Line, w.line)
				}
			}
		}
		if !found {
			t.Errorf("no problem for %s (%q) in %v", w.key, w.has, e.Problems)
		}
	}
}
