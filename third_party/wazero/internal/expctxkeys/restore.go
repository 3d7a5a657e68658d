package expctxkeys

// RestoreKey is a context.Context Value key. Its associated value is a
// []uint64: the values of the mutable globals an instance starts with,
// instead of its data segments, its globals' initialisers and its start
// function (meshd patch).
type RestoreKey struct{}
