// Command lagprobe measures how far the order service's read model trails
// the orders it admits, while a load runs beside it (make loadtest): every
// -every it posts an order for a user of its own and polls that user's
// order list (GET /users/{id}/orders) until the order is in it. The lag is
// the time from the 201 to the first list that holds the order. A POST the
// gateway sheds (503, 429) is counted and not measured: that order was not
// admitted.
//
//	lagprobe -url http://127.0.0.1:18090 -for 10s
//
// It prints one line: probes, shed, lost (not visible within -max),
// p50/p99/max lag.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18090", "meshd's HTTP address")
	dur := flag.Duration("for", 10*time.Second, "how long to probe")
	every := flag.Duration("every", 100*time.Millisecond, "time between probes")
	maxLag := flag.Duration("max", 10*time.Second, "a probe not visible by then is lost")
	flag.Parse()
	if err := run(*base, *dur, *every, *maxLag); err != nil {
		fmt.Fprintln(os.Stderr, "lagprobe:", err)
		os.Exit(1)
	}
}

func run(base string, dur, every, maxLag time.Duration) error {
	client := &http.Client{Timeout: 10 * time.Second}
	end := time.Now().Add(dur)
	var lags []time.Duration
	shed, lost, failed := 0, 0, 0
	for n := 0; time.Now().Before(end); n++ {
		next := time.Now().Add(every)
		user := fmt.Sprintf("lagprobe-%d-%d", os.Getpid(), n)
		id, status, err := post(client, base, user)
		switch {
		case err != nil:
			failed++
		case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
			shed++
		case status != http.StatusCreated:
			failed++
		default:
			lag, ok := waitVisible(client, base, user, id, maxLag)
			if ok {
				lags = append(lags, lag)
			} else {
				lost++
			}
		}
		time.Sleep(time.Until(next))
	}
	if len(lags) == 0 {
		return fmt.Errorf("no probe was admitted and seen (shed %d, lost %d, failed %d)", shed, lost, failed)
	}
	slices.Sort(lags)
	q := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	fmt.Printf("read-model lag: %d probes admitted, %d shed, %d lost (not visible within %s), %d failed; p50 %s, p99 %s, max %s\n",
		len(lags)+lost, shed, lost, maxLag, failed, round(q(0.50)), round(q(0.99)), round(lags[len(lags)-1]))
	if lost > 0 || failed > 0 {
		return fmt.Errorf("%d probes lost, %d failed", lost, failed)
	}
	return nil
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// post creates an order for user and returns its id and the status.
func post(client *http.Client, base, user string) (string, int, error) {
	body := fmt.Sprintf(`{"user_id":%q,"items":[{"name":"probe","price":1}]}`, user)
	resp, err := client.Post(base+"/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", resp.StatusCode, err
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
		return "", resp.StatusCode, fmt.Errorf("a 201 without an order id: %q", b)
	}
	return o.ID, resp.StatusCode, nil
}

// waitVisible polls user's order list until it holds id: the time from
// now (just after the 201) to the list that first held it.
func waitVisible(client *http.Client, base, user, id string, maxLag time.Duration) (time.Duration, bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), maxLag)
	defer cancel()
	want := []byte(`"` + id + `"`)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/users/"+user+"/orders", nil)
		if resp, err := client.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, want) {
				return time.Since(start), true
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, false
}
