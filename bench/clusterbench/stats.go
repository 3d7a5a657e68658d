package clusterbench

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Quantile is the q-quantile (0 ≤ q ≤ 1) of the samples, nearest rank; it
// sorts them. Zero for none.
func Quantile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	i := int(q*float64(len(samples)) + 0.5)
	return samples[min(max(i-1, 0), len(samples)-1)]
}

// CounterSum reads a Prometheus text exposition and sums the samples of
// the metric name whose labels include every pair of want.
func CounterSum(r io.Reader, name string, want map[string]string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a comment, another metric, or one whose name starts with name
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("clusterbench: metrics: unterminated labels in %.200q", line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		if !hasLabels(labels, want) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("clusterbench: metrics: no value in %.200q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("clusterbench: metrics: value in %.200q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// hasLabels says whether the label set (`a="x",b="y"`, values escaped as
// Prometheus escapes them) has every pair of want.
func hasLabels(labels string, want map[string]string) bool {
	for k, v := range want {
		if !strings.Contains(","+labels+",", ","+k+"="+strconv.Quote(v)+",") {
			return false
		}
	}
	return true
}
