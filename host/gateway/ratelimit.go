package gateway

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of a limiterStore's memory.
const (
	// limiterSweepEvery is how often buckets that are full again are
	// dropped (a full bucket equals a fresh one, so dropping it loses
	// nothing).
	limiterSweepEvery = time.Minute
	// limiterMaxKeys caps the buckets of one policy; past it, full buckets
	// are dropped at once, then, if still needed, arbitrary ones.
	limiterMaxKeys = 100_000
)

// limiterStore holds one token bucket per key (consumer or client
// address) for one policy.
type limiterStore struct {
	rate   float64
	burst  int
	limit  rate.Limit
	policy []string // RateLimit-Policy value, shared (capacity 1: see jsonContentType)
	name   string   // the policy's name in the RateLimit header

	mu        sync.Mutex
	buckets   map[bucketKey]*rate.Limiter
	lastSweep time.Time
	now       func() time.Time
}

func newLimiterStore(name string, r float64, burst int) *limiterStore {
	window := int(math.Ceil(float64(burst) / r))
	if window < 1 {
		window = 1
	}
	name = sfString(name)
	return &limiterStore{
		rate:    r,
		burst:   burst,
		limit:   rate.Limit(r),
		name:    name,
		policy:  []string{name + ";q=" + strconv.Itoa(burst) + ";w=" + strconv.Itoa(window)},
		buckets: make(map[bucketKey]*rate.Limiter),
		now:     time.Now,
	}
}

// sfString quotes s as a structured-field string, dropping characters it
// cannot hold.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// bucketKey names a bucket: an authenticated consumer, or a client address
// for anonymous requests.
type bucketKey struct {
	anonymous bool
	id        string // consumer name, or client address when anonymous
}

// allow takes a token from key's bucket. It sets RateLimit-Policy and
// RateLimit on w, and Retry-After when it refuses.
func (s *limiterStore) allow(w http.ResponseWriter, key bucketKey) bool {
	now := s.now()
	s.mu.Lock()
	l := s.buckets[key]
	if l == nil {
		s.sweepLocked(now)
		l = rate.NewLimiter(s.limit, s.burst)
		s.buckets[key] = l
	}
	ok := l.AllowN(now, 1)
	tokens := l.TokensAt(now)
	s.mu.Unlock()

	h := w.Header()
	h["Ratelimit-Policy"] = s.policy[:1:1]
	remaining := int(math.Floor(tokens))
	if remaining < 0 {
		remaining = 0
	}
	// t: seconds until a request would be admitted again when none
	// remain, else until the bucket is full.
	var reset float64
	if ok {
		reset = (float64(s.burst) - tokens) / s.rate
	} else {
		reset = (1 - tokens) / s.rate
	}
	secs := int(math.Ceil(reset))
	if secs < 0 {
		secs = 0
	}
	h["Ratelimit"] = []string{s.name + ";r=" + strconv.Itoa(remaining) + ";t=" + strconv.Itoa(secs)}
	if !ok {
		if secs < 1 {
			secs = 1
		}
		h["Retry-After"] = []string{strconv.Itoa(secs)}
	}
	return ok
}

// sweepLocked drops full buckets (equal to fresh ones) once a minute, or
// at once when the store is at its cap.
func (s *limiterStore) sweepLocked(now time.Time) {
	full := len(s.buckets) >= limiterMaxKeys
	if !full && now.Sub(s.lastSweep) < limiterSweepEvery {
		return
	}
	s.lastSweep = now
	for k, l := range s.buckets {
		if l.TokensAt(now) >= float64(s.burst) {
			delete(s.buckets, k)
		}
	}
	for k := range s.buckets {
		if len(s.buckets) < limiterMaxKeys {
			break
		}
		delete(s.buckets, k)
	}
}

// size is the number of buckets held.
func (s *limiterStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}
