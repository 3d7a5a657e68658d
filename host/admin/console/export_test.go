package console

import "time"

// SampleAt gathers c's registry as if at t, without the background
// sampler, so tests choose the times between samples.
func SampleAt(c *Console, t time.Time) { c.sample(t) }

// Held is how many samples c holds.
func Held(c *Console) int { return len(c.samples()) }
