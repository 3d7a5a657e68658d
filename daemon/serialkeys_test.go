package daemon

import (
	"context"
	"hash/maphash"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// TestCheckEventsSettings: meshd check (and the daemon) refuse an [events]
// table naming a type the module does not subscribe to (read_model_types,
// serial_keys), serial_keys without serial or with no field; the shipped
// files pass.
func TestCheckEventsSettings(t *testing.T) {
	for _, c := range []struct{ svc, name, from, to, want string }{
		{"order", "as shipped", "", "", ""},
		{"payment", "as shipped", "", "", ""},
		{"order", "unsubscribed read-model type", "read_model_types = [", `read_model_types = ["NOPE", `, "read_model_types lists NOPE"},
		{"order", "serial_keys without serial", "serial = true", "serial = false", "events.serial_keys: needs events.serial = true"},
		{"payment", "serial_keys without serial", "serial = true", "serial = false", "events.serial_keys: needs events.serial = true"},
		{"order", "unsubscribed serial_keys type", "serial_keys = {", `serial_keys = { NOPE = "id",`, "serial_keys lists NOPE"},
		{"payment", "unsubscribed serial_keys type", "serial_keys = {", `serial_keys = { NOPE = "id",`, "serial_keys lists NOPE"},
		{"payment", "serial_keys with no field", "serial_keys = {", `serial_keys = { X_Y = "",`, `"X_Y" names no field`},
	} {
		wasm := fixture(t, filepath.Join("..", "build", "plugins", c.svc+".wasm"))
		good := string(readFile(t, fixture(t, filepath.Join("..", "build", "plugins", c.svc+".toml"))))
		file := strings.Replace(good, c.from, c.to, 1)
		if c.from != "" && file == good {
			t.Fatalf("%s.toml has no %q", c.svc, c.from)
		}
		toml := filepath.Join(t.TempDir(), c.svc+".toml")
		writeFile(t, toml, file)
		_, err := Check(context.Background(), wasm, toml, nil)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s, %s: %v; want %q", c.svc, c.name, err, c.want)
		}
	}
}
