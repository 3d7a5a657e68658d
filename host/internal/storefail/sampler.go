package storefail

import (
	"sync"
	"time"
)

// Sampler bounds a run of similar log lines: the first is logged, then at
// most one every Every, which says how many were held back since the last.
// The zero value logs every line; it is safe for concurrent use.
type Sampler struct {
	Every time.Duration

	mu   sync.Mutex
	next time.Time
	held int
}

// Allow reports whether a line is to be logged now and, when it is, how
// many were held back before it.
func (s *Sampler) Allow() (ok bool, held int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.held++
		return false, 0
	}
	s.next = now.Add(s.Every)
	held, s.held = s.held, 0
	return true, held
}
