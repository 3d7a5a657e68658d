package daemon

import (
	"context"
	"hash/maphash"
	"os"
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

// TestCheckSerialKeys: meshd check (and the daemon) refuse serial_keys
// without serial, with a type the module does not subscribe to, or with
// no field; the shipped files pass.
func TestCheckSerialKeys(t *testing.T) {
	for _, svc := range []string{"order", "payment"} {
		wasm := fixture(t, filepath.Join("..", "build", "plugins", svc+".wasm"))
		good := string(readFile(t, fixture(t, filepath.Join("..", "build", "plugins", svc+".toml"))))
		if !strings.Contains(good, "serial_keys = {") {
			t.Fatalf("%s.toml has no serial_keys", svc)
		}
		toml := filepath.Join(t.TempDir(), svc+".toml")
		for _, c := range []struct{ name, file, want string }{
			{"as shipped", good, ""},
			{"without serial", strings.Replace(good, "serial = true", "serial = false", 1), "serial_keys needs events.serial = true"},
			{"unsubscribed type", strings.Replace(good, "serial_keys = {", `serial_keys = { NOPE = "id",`, 1), "serial_keys lists NOPE"},
			{"no field", strings.Replace(good, "serial_keys = {", `serial_keys = { X_Y = "",`, 1), "X_Y names no field"},
		} {
			if err := os.WriteFile(toml, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Check(context.Background(), wasm, toml, nil)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s, %s: %v; want %q", svc, c.name, err, c.want)
			}
		}
	}
}
