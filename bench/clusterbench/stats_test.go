package clusterbench

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // descending: Quantile sorts
	}
	for _, c := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100", ms(3, 1, 2), 1, 3 * time.Millisecond},
		{"p0", ms(3, 1, 2), 0, 1 * time.Millisecond},
	} {
		if got := Quantile(c.in, c.q); got != c.want {
			t.Errorf("%s: Quantile(%v) = %v, want %v", c.name, c.q, got, c.want)
		}
	}
}

const exposition = `# HELP meshd_events_delivered_total Events a subscribing service handled.
# TYPE meshd_events_delivered_total counter
meshd_events_delivered_total{service="order",topic="ORDER_CREATED"} 12
meshd_events_delivered_total{service="order",topic="ORDER_PAID"} 10
meshd_events_delivered_total{service="payment",topic="ORDER_CREATED"} 12
meshd_events_delivered_total_other{service="order",topic="ORDER_PAID"} 1000
meshd_events_delivered_total{topic="ORDER_PAID",service="order",node="b"} 5
meshd_up 1
`

func TestCounterSum(t *testing.T) {
	for _, c := range []struct {
		name string
		want map[string]string
		sum  float64
	}{
		{"one series", map[string]string{"service": "order", "topic": "ORDER_CREATED"}, 12},
		{"labels in another order, extra labels", map[string]string{"service": "order", "topic": "ORDER_PAID"}, 15},
		{"by topic across services", map[string]string{"topic": "ORDER_CREATED"}, 24},
		{"no match", map[string]string{"service": "user"}, 0},
		{"every series", nil, 39},
	} {
		got, err := CounterSum(strings.NewReader(exposition), "meshd_events_delivered_total", c.want)
		if err != nil || got != c.sum {
			t.Errorf("%s: CounterSum = %v, %v; want %v", c.name, got, err, c.sum)
		}
	}
	if got, err := CounterSum(strings.NewReader("meshd_up 1\n"), "meshd_up", nil); err != nil || got != 1 {
		t.Errorf("unlabelled: %v, %v", got, err)
	}
	for _, bad := range []string{"m{a=\"b\" 1\n", "m{a=\"b\"}\n", "m{a=\"b\"} x\n"} {
		if _, err := CounterSum(strings.NewReader(bad), "m", nil); err == nil {
			t.Errorf("CounterSum(%q): no error", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// A real line's shape, with a command name holding a space and a
	// parenthesis: utime 250 and stime 30 ticks.
	line := "4242 (mesh d) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 30 0 0 20 0 12 0 100 0 0\n"
	got, err := parseStatCPU([]byte(line))
	if want := 2800 * time.Millisecond; err != nil || got != want {
		t.Fatalf("parseStatCPU = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"4242 meshd S 1", "4242 (meshd) S 1 2 3", "4242 (meshd) S 1 4242 4242 0 -1 4194560 9000 0 0 0 x 30 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

// TestProcCPU: this process's CPU from /proc grows while it burns CPU
// (bounded by a deadline, not a speed).
func TestProcCPU(t *testing.T) {
	pid := os.Getpid()
	start, err := ProcCPU(pid)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	x := uint64(1)
	for {
		now, err := ProcCPU(pid)
		if err != nil {
			t.Fatal(err)
		}
		if now > start {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ProcCPU stayed at %v for 20 s of busy work", start)
		}
		for i := range 1_000_000 {
			x = x*6364136223846793005 + uint64(i)
		}
	}
	_ = x
}

func TestLineLog(t *testing.T) {
	l := newLineLog()
	// Lines split across writes; the first line naming an address wins.
	for _, w := range []string{
		`time=1 level=INFO msg="admin listen`, "ing\" admin=127.0.0.1:9091 token=false\n",
		`time=2 level=INFO msg="meshd serving" http=127.0.0.1:8081 node=a` + "\n",
		`time=3 level=INFO msg="meshd serving" http=127.0.0.1:9999` + "\n",
	} {
		if _, err := l.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-l.serving:
		if a != "127.0.0.1:8081" {
			t.Errorf("serving %q", a)
		}
	default:
		t.Error("no serving address")
	}
	select {
	case a := <-l.admin:
		if a != "127.0.0.1:9091" {
			t.Errorf("admin %q", a)
		}
	default:
		t.Error("no admin address")
	}
	// The log keeps its start and its end only.
	for i := range 3 * (logHead + logTail) / 1000 {
		_, _ = l.Write([]byte(fmt.Sprintf("%04d%s\n", i, strings.Repeat("x", 995))))
	}
	last := fmt.Sprintf("%04d", 3*(logHead+logTail)/1000-1)
	s := l.String()
	if len(s) > logHead+logTail+100 || !strings.HasPrefix(s, "time=1 ") || !strings.Contains(s, "bytes ...]") ||
		!strings.Contains(s, "\n"+last+"xxx") {
		t.Errorf("log of %d bytes, want at most %d: its first line, a gap and line %s:\n%.300s", len(s), logHead+logTail+100, last, s)
	}
}
