package admin

import (
	"testing"

	"github.com/meshd/meshd/internal/leakcheck"
)

// TestMain fails the package when a test leaves a goroutine running: a
// job's, or a listener's.
func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
