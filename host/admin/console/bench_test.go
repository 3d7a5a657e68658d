package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/meshd/meshd/host/admin/console"
	"github.com/meshd/meshd/host/metrics"
)

// busyRegistry is meshd's registry with 20 routes (two codes each) and 10
// consumers: a mid-sized deployment.
func busyRegistry() *metrics.Metrics {
	var lag []metrics.ConsumerLag
	for i := range 10 {
		lag = append(lag, metrics.ConsumerLag{Service: fmt.Sprintf("svc%d", i%5), Topic: fmt.Sprintf("TOPIC_%d", i)})
	}
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{
		Consumers: func(context.Context) ([]metrics.ConsumerLag, error) { return lag, nil },
	})
	for i := range 20 {
		route := fmt.Sprintf("GET /r%d/{id}", i)
		m.Request(fmt.Sprintf("svc%d", i%5), route, "GET", 200, time.Millisecond)
		m.Request(fmt.Sprintf("svc%d", i%5), route, "GET", 500, time.Millisecond)
	}
	return m
}

// BenchmarkSample is one sampler tick: gathering meshd's registry (Go and
// process collectors included) and keeping the routes, consumers and
// modules.
func BenchmarkSample(b *testing.B) {
	m := busyRegistry()
	c, err := console.New(console.Source{Gatherer: m.Registry()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		console.SampleAt(c, t0.Add(time.Duration(i)*time.Second))
	}
}

// BenchmarkData is one GET /v1/console with a full ring (5 minutes of
// 2-second samples) of 20 routes: the figures and their JSON.
func BenchmarkData(b *testing.B) {
	m := busyRegistry()
	c, err := console.New(console.Source{Gatherer: m.Registry()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	for i := range 151 {
		console.SampleAt(c, t0.Add(time.Duration(i)*2*time.Second))
	}
	b.ReportAllocs()
	var size int
	for b.Loop() {
		cw := &countWriter{}
		if err := json.NewEncoder(cw).Encode(c.Data()); err != nil {
			b.Fatal(err)
		}
		size = cw.n
	}
	b.ReportMetric(float64(size), "bytes/answer")
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
