package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

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
