package experimental

import (
	"context"
	"errors"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/internal/expctxkeys"
)

// MutableGlobals returns the values of the mutable globals mod defines
// (not those it imports), in index order, two words each (the low and
// the high 64 bits; the high word is zero but for v128), and false if mod
// was not instantiated by wazero or one of those globals holds a
// reference (funcref, externref): a reference points into its own
// instance and cannot be carried to another (meshd patch).
//
// With a copy of its memory they are the state an instance's code can
// change; WithRestore starts another instance of the same compiled module
// from them.
func MutableGlobals(mod api.Module) ([]uint64, bool) {
	g, ok := mod.(interface{ MutableGlobalValues() ([]uint64, bool) })
	if !ok {
		return nil, false
	}
	return g.MutableGlobalValues()
}

// WithRestore returns a context under which wazero.Runtime's
// InstantiateModule starts an instance from a captured state rather than
// from the module's initialisers (meshd patch): its mutable globals take
// globals (as MutableGlobals returns them, from an instance of the same
// compiled module), its active data segments are not copied into its
// memory, and the module's start function (the start section) does not
// run. Its memory is what the MemoryAllocator in ctx gives it: the
// allocator brings the captured contents (see WithMemoryAllocator), and
// the caller grows the memory to the captured size; start functions in
// the ModuleConfig still run, so leave them out. Immutable globals,
// tables and element segments are initialised as usual: they are the
// same in every instance. Instantiation fails if globals does not have
// two words for each of the module's mutable globals, or one of them
// holds a reference.
func WithRestore(ctx context.Context, globals []uint64) context.Context {
	return context.WithValue(ctx, expctxkeys.RestoreKey{}, globals)
}

// ResetRestored puts mod, an instance InstantiateModule started under
// WithRestore(ctx, globals), back in the state it had then, its linear
// memory apart (meshd patch): its mutable globals take globals again, its
// tables hold what its element segments put there and nothing else, and
// its dropped data and element segments are back. The caller puts the
// memory back (the same contents and size) before the next call. It fails,
// changing nothing, when mod is closed or was not instantiated by wazero,
// imports a table, or one of its tables has grown; then close it and
// instantiate another. No call may be running on mod.
func ResetRestored(mod api.Module, globals []uint64) error {
	r, ok := mod.(interface{ ResetRestored([]uint64) error })
	if !ok {
		return errors.New("reset: not a wazero module instance")
	}
	return r.ResetRestored(globals)
}
