package runtime

import (
	"testing"

	"github.com/meshd/meshd/internal/leakcheck"
)

// TestMain fails a passing run that leaves a goroutine behind: everything
// the package starts is stopped by its Close.
func TestMain(m *testing.M) {
	leakcheck.Main(m, nil)
}
