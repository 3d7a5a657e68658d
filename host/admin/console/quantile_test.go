package console

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuantile(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1}
	tests := []struct {
		name       string
		q          float64
		cumulative []float64
		total      float64
		want       float64
	}{
		{"no observations", 0.5, []float64{0, 0, 0}, 0, math.NaN()},
		{"all in the first bucket, interpolated from 0", 0.5, []float64{10, 10, 10}, 10, 0.005},
		{"second bucket", 0.5, []float64{2, 10, 10}, 10, 0.01 + 0.09*3/8},
		{"upper edge of a bucket", 0.2, []float64{2, 10, 10}, 10, 0.01},
		{"in +Inf: the highest finite bound", 0.99, []float64{0, 0, 5}, 10, 1},
		{"p99 of 100 with one slow: the rank's bucket edge", 0.99, []float64{99, 99, 100}, 100, 0.01},
		{"p99 of 100 with two slow", 0.99, []float64{98, 98, 100}, 100, 0.1 + 0.9*1/2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := quantile(tt.q, bounds, tt.cumulative, tt.total)
			if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-12) {
				t.Fatalf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestNumJSON(t *testing.T) {
	b, err := json.Marshal([]Num{Num(math.NaN()), Num(math.Inf(1)), 0, 1.23456, 0.000123456})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "[null,null,0,1.235,0.0001235]" {
		t.Fatalf("got %s", got)
	}
}

func TestBound(t *testing.T) {
	s := strings.Repeat("é", 200) // 400 bytes
	got := bound(s, 255)
	if len(got) > 255+3 || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Fatalf("bound cut %d bytes into %q", len(s), got)
	}
	if bound("short", 255) != "short" {
		t.Fatal("bound changed a short string")
	}
}
