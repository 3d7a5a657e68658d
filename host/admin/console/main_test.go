package console_test

import (
	"testing"

	"github.com/meshd/meshd/internal/leakcheck"
)

// TestMain fails the package when a test leaves the sampler running.
func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
