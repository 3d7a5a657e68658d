package runtime

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails a passing run that leaves a goroutine behind: everything
// the package starts is stopped by its Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
