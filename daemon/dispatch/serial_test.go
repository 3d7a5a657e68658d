package dispatch

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
)

func TestTopString(t *testing.T) {
	for _, c := range []struct {
		data, field, want string
		ok                bool
	}{
		{`{"order_id":"o1","user_id":"u1"}`, "user_id", "u1", true},
		{`{"items":[{"user_id":"inner"}],"user_id":"u2","x":{"a":1}}`, "user_id", "u2", true},
		{`{"id":"o1"}`, "user_id", "", false},
		{`{"user_id":7}`, "user_id", "", false},
		{`["user_id","u"]`, "user_id", "", false},
		{`not json`, "user_id", "", false},
		{`{"user_id":`, "user_id", "", false},
	} {
		got, ok := topString([]byte(c.data), c.field)
		if got != c.want || ok != c.ok {
			t.Errorf("topString(%s, %s) = %q, %v; want %q, %v", c.data, c.field, got, ok, c.want, c.ok)
		}
	}
}

// TestSerialGroup: handlers of different keys hold the group at once, one
// key's wait for each other, and an unkeyed handler (or a replay) waits for
// every keyed one and holds off the rest.
func TestSerialGroup(t *testing.T) {
	var g serialGroup
	stripe := func(k string) uint64 { return maphash.String(serialSeed, k) % serialStripes }
	a, b := "a", "b"
	for i := 0; stripe(b) == stripe(a); i++ {
		b = "b" + strings.Repeat("x", i)
	}
	wait := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still waiting after 10 s", what)
		}
	}

	unlockA := g.lockKey(a)
	done := make(chan struct{})
	go func() { g.lockKey(b)(); close(done) }()
	wait(done, "another key while a is held")

	var released atomic.Bool
	sameKey, whole := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sameKey)
		unlock := g.lockKey(a)
		if !released.Load() {
			t.Error("key a held twice at once")
		}
		unlock()
	}()
	go func() {
		defer close(whole)
		g.Lock()
		if !released.Load() {
			t.Error("the whole group held beside key a")
		}
		g.Unlock()
	}()
	time.Sleep(10 * time.Millisecond) // let both reach their lock (not needed for correctness)
	released.Store(true)
	unlockA()
	wait(sameKey, "key a after its release")
	wait(whole, "the whole group after key a's release")

	g.Lock()
	var wholeReleased atomic.Bool
	keyed := make(chan struct{})
	go func() {
		defer close(keyed)
		unlock := g.lockKey(b)
		if !wholeReleased.Load() {
			t.Error("a key held beside the whole group")
		}
		unlock()
	}()
	wholeReleased.Store(true)
	g.Unlock()
	wait(keyed, "key b after the whole group's release")
}

func TestCheckWrites(t *testing.T) {
	c := config.Events{ReadModelPrefix: "rm:", ReadModelTypes: []string{"CREATED"}}
	w := func(keys ...string) []host.KVOp {
		ops := make([]host.KVOp, len(keys))
		for i, k := range keys {
			ops[i] = host.KVOp{Key: k}
		}
		return ops
	}
	for _, tc := range []struct {
		typ    string
		writes []host.KVOp
		want   string
	}{
		{"CREATED", w("rm:order:1", "rm:user:u"), ""},
		{"CREATED", w("rm:order:1", "order:1"), `wrote "order:1", outside read_model_prefix`},
		{"PAID", w("order:1"), ""},
		{"PAID", w("order:1", "rm:order:1"), `wrote "rm:order:1" under read_model_prefix`},
		{"PAID", nil, ""},
	} {
		err := checkWrites(&c, tc.typ, tc.writes)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %v: %v, want %q", tc.typ, tc.writes, err, tc.want)
		}
	}
	// Without read_model_types nothing is checked.
	if err := checkWrites(&config.Events{ReadModelPrefix: "rm:"}, "PAID", w("rm:x", "y")); err != nil {
		t.Fatal(err)
	}
}
