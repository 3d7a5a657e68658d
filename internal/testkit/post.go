package testkit

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"
)

// Shed retries: admission control answers a request it sheds (nothing
// made) 503 with Retry-After, which PostJSON sends again ShedTries times
// at most, ShedPause apart (30 s in all).
const (
	ShedTries = 3000
	ShedPause = 10 * time.Millisecond
)

// PostJSON posts body to url as JSON as a patient client would: a request
// shed (503 with Retry-After: the pipeline behind it lags, as on a loaded
// machine under -race) is sent again, ShedTries times at most. It returns
// the last answer's status and body (its first 64 KiB).
func PostJSON(ctx context.Context, c *http.Client, url, body string) (int, []byte, error) {
	for tries := 0; ; tries++ {
		req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return 0, nil, err
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || tries+1 >= ShedTries {
			return resp.StatusCode, b, nil
		}
		select {
		case <-time.After(ShedPause):
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}
