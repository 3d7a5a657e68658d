package daemon

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
)

// TestAsleepServicesServeTheSaga: the order and payment services, asleep
// after idle_release without a call (no instance, code and image out of
// resident memory, /v1/services saying so), are woken by the saga's
// request and events, and the order ends PAID.
func TestAsleepServicesServeTheSaga(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, func(c *Config) {
		c.Module.IdleRelease = time.Second // the shortest meshd takes
	})
	asleep := func() map[string]bool {
		_, body := adminGet(t, td, "/v1/services", "")
		var v struct {
			Services []struct {
				Name      string
				Instances struct {
					Asleep bool `json:"asleep"`
				} `json:"instances"`
			}
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		out := map[string]bool{}
		for _, s := range v.Services {
			out[s.Name] = s.Instances.Asleep
		}
		return out
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if a := asleep(); !a["order"] || !a["payment"] {
			return fmt.Sprintf("asleep: %v", a)
		}
		return ""
	})
	for _, name := range []string{"order", "payment"} {
		// The binary goes with a snapshot (not under
		// MESHD_TEST_INSTANCES=initialised, which turns them off).
		m := td.lookup(name).Module()
		if st := m.Stats(); st.Live != 0 || st.Released == 0 || st.SourceReleased != m.Snapshot().Taken {
			t.Fatalf("%s asleep: %+v, snapshot %+v", name, st, m.Snapshot())
		}
	}
	td.orderPaid(t, 20*time.Second)
	for _, name := range []string{"order", "payment"} {
		if st := td.lookup(name).Module().Stats(); st.Calls < 2 {
			t.Fatalf("%s served %d calls: %+v", name, st.Calls, st)
		}
	}
}
