package mesh

import (
	"sync"
	"sync/atomic"
	"time"
)

// BudgetWindow is how far back a retry budget counts calls and retries.
const BudgetWindow = 10 * time.Second

const budgetBuckets = 10 // of one second each

// budget is the retry budget of one callee, shared by all its callers:
// retries in the last BudgetWindow may reach ratio × the calls made in that
// window, and minPerSec retries in each second are allowed whatever the
// ratio, so that a callee called rarely can still be retried. A callee
// failing every call thus sees at most (1 + ratio) × the calls plus
// minPerSec a second, not attempts × the calls.
type budget struct {
	ratio     float64
	minPerSec int64

	mu      sync.Mutex
	buckets [budgetBuckets]budgetBucket

	granted, refused atomic.Uint64 // for metrics
}

type budgetBucket struct {
	sec            int64 // unix second the counts are of
	calls, retries int64
}

func newBudget(ratio float64, minPerSec int) *budget {
	return &budget{ratio: ratio, minPerSec: int64(minPerSec)}
}

// bucket returns the bucket of second sec, emptied if it held an older
// second. b.mu is held.
func (b *budget) bucket(sec int64) *budgetBucket {
	k := &b.buckets[uint64(sec)%budgetBuckets]
	if k.sec != sec {
		*k = budgetBucket{sec: sec}
	}
	return k
}

// call counts a call's first attempt.
func (b *budget) call(now time.Time) {
	b.mu.Lock()
	b.bucket(now.Unix()).calls++
	b.mu.Unlock()
}

// retry reports whether one more attempt is within the budget, and counts
// it if so.
func (b *budget) retry(now time.Time) bool {
	sec := now.Unix()
	b.mu.Lock()
	cur := b.bucket(sec)
	ok := cur.retries < b.minPerSec
	if !ok {
		var calls, retries int64
		for i := range b.buckets {
			k := &b.buckets[i]
			if k.sec > sec-budgetBuckets && k.sec <= sec {
				calls += k.calls
				retries += k.retries
			}
		}
		ok = float64(retries+1) <= b.ratio*float64(calls)
	}
	if ok {
		cur.retries++
	}
	b.mu.Unlock()
	if ok {
		b.granted.Add(1)
	} else {
		b.refused.Add(1)
	}
	return ok
}
