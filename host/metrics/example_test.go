package metrics_test

import (
	"fmt"
	"time"

	"github.com/meshd/meshd/host/metrics"
)

func Example() {
	m := metrics.New(metrics.BuildInfo{Version: "v1.0.0"}, metrics.Sources{})
	m.Request("order", "POST /orders", "POST", 201, 3*time.Millisecond)
	m.Invoked("order", "http", metrics.ResultOK, 2*time.Millisecond)

	families, _ := m.Registry().Gather()
	for _, f := range families {
		if f.GetName() == "meshd_gateway_requests_total" {
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					fmt.Printf("%s=%s ", l.GetName(), l.GetValue())
				}
				fmt.Println(s.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// code=201 method=POST route=POST /orders service=order 1
}
