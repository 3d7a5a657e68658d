//go:build race

package daemon

// raceEnabled: the race detector slows wazero's compiler about 20×, so the
// reload tests compile fewer new versions under it.
const raceEnabled = true
