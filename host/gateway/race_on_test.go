//go:build race

package gateway

// raceEnabled: sync.Pool drops items at random under -race, so
// allocation counts are noise.
const raceEnabled = true
