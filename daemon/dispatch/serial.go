package dispatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
)

// serialLocks are the locks held around the service's event handlers
// when its [events] serial is set: one set per service name, shared by
// every version of the service, so a reload does not run an old and a new
// version's handlers at once. The handlers of its read_model_types hold
// readModel, the others service.
type serialLocks struct{ service, readModel serialGroup }

// serialStripes is how many keys' handlers of one group can run at once
// (keys hashing to one stripe wait for each other).
const serialStripes = 64

// serialGroup runs handlers one at a time, or, for those with a key
// (config.Events.SerialKeys), one at a time per key: a keyed handler holds
// all shared and its key's stripe; a handler with no key, and a replay,
// hold all alone.
type serialGroup struct {
	all     sync.RWMutex
	stripes [serialStripes]sync.Mutex
}

// Lock and Unlock hold the whole group: nothing else of it runs.
func (g *serialGroup) Lock()   { g.all.Lock() }
func (g *serialGroup) Unlock() { g.all.Unlock() }

var serialSeed = maphash.MakeSeed()

// lockKey holds the group for a handler of key and returns its release.
func (g *serialGroup) lockKey(key string) (unlock func()) {
	g.all.RLock()
	m := &g.stripes[maphash.String(serialSeed, key)%serialStripes]
	m.Lock()
	return func() {
		m.Unlock()
		g.all.RUnlock()
	}
}

func (d *Dispatcher) serialLocks(name string) *serialLocks {
	if v, ok := d.serial.Load(name); ok {
		return v.(*serialLocks)
	}
	v, _ := d.serial.LoadOrStore(name, new(serialLocks))
	return v.(*serialLocks)
}

// serialLock is the lock group a handler of typ holds under c.
func (d *Dispatcher) serialLock(name string, c *config.Events, typ string) *serialGroup {
	l := d.serialLocks(name)
	if c.ReadModelType(typ) {
		return &l.readModel
	}
	return &l.service
}

// readModelLock is the lock that guards the read model of service name
// under c: the read-model handlers' own when c has read_model_types (only
// they write there), otherwise the service's.
func (d *Dispatcher) readModelLock(name string, c *config.Events) *serialGroup {
	l := d.serialLocks(name)
	if len(c.ReadModelTypes) == 0 {
		return &l.service
	}
	return &l.readModel
}

// serialKey returns the key an event of typ with data runs under, if c
// gives its type one and the data has it.
func serialKey(c *config.Events, typ string, data []byte) (string, bool) {
	field, ok := c.SerialKeys[typ]
	if !ok {
		return "", false
	}
	return topString(data, field)
}

// topString returns the top-level string field of a JSON object.
func topString(data []byte, field string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		if t == field {
			t, err := dec.Token()
			v, ok := t.(string)
			return v, ok && err == nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// checkWrites enforces c's ReadModelTypes on the writes of a handler of
// typ: a read-model handler writes only under the prefix, and no other
// handler writes there.
func checkWrites(c *config.Events, typ string, writes []host.KVOp) error {
	if len(c.ReadModelTypes) == 0 {
		return nil
	}
	rm := c.ReadModelType(typ)
	for _, w := range writes {
		switch under := strings.HasPrefix(w.Key, c.ReadModelPrefix); {
		case rm && !under:
			return fmt.Errorf("%s is a read-model type ([events] read_model_types) but its handler wrote %q, outside read_model_prefix %q", typ, w.Key, c.ReadModelPrefix)
		case !rm && under:
			return fmt.Errorf("the handler of %s wrote %q under read_model_prefix %q, which only read_model_types handlers may write", typ, w.Key, c.ReadModelPrefix)
		}
	}
	return nil
}
