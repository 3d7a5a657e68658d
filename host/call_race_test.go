//go:build race

package host_test

// raceEnabled: the race detector drops some of a sync.Pool's items, so
// allocation counts are not checked under it.
const raceEnabled = true
