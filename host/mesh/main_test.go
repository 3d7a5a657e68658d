package mesh

import (
	"testing"

	"github.com/meshd/meshd/internal/leakcheck"
)

// TestMain fails a passing run that leaves a goroutine behind: a Client
// starts none, and a backoff's timer must not outlive its call.
func TestMain(m *testing.M) {
	leakcheck.Main(m, nil)
}
