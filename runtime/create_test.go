package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/meshd/meshd/internal/wattest"
)

// TestInstanceMadeInAGuestsCall: an instance the pool makes during a call
// whose context is a guest's (it carries that instance's call context, as
// a call from one service to another does) is made under a context of its
// own: when the caller's context ends, the new instance, whose initialiser
// ran, still serves.
func TestInstanceMadeInAGuestsCall(t *testing.T) {
	m := loadIO(t, wattest.Build(t, "testdata/snap-marker.wat"),
		ModuleConfig{Name: "marker", DisableSnapshot: true, PoolMin: 1, PoolMax: 2})
	held := <-m.idle // the pool must make an instance for the next call
	defer func() { m.idle <- held }()
	caller, cancel := context.WithCancel(experimental.WithInstanceContext(context.Background()))
	c := Call{Input: []byte("r")}
	if err := m.Invoke(caller, EntryHTTP, &c); err != nil || string(c.Output) != markerFresh {
		t.Fatalf("call in the guest's context: %q, %v", c.Output, err)
	}
	cancel()
	time.Sleep(20 * time.Millisecond) // wazero closes a watched instance off the caller's goroutine
	c = Call{Input: []byte("r")}
	if err := m.Invoke(context.Background(), EntryHTTP, &c); err != nil || string(c.Output) != markerFresh {
		t.Fatalf("the instance made in it, after the caller's context ended: %q, %v", c.Output, err)
	}
	if st := m.Stats(); st.Created != 2 || st.Failures != 0 {
		t.Fatalf("stats: %+v", st)
	}
}
