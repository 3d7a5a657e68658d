// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"fmt"
	"time"
)

// SetRaftTimeouts sets, for every Raft group of this process, how long a
// follower waits without hearing from its leader before it stands for
// election (a random time between minElection and maxElection) and how
// often a leader sends its heartbeat. Upstream's are 4 to 9 s and 1 s,
// made for clusters across wide-area links: a group whose leader's server
// died stays without a leader, taking no writes, for 4 to 9 s. The values
// are process-wide: call SetRaftTimeouts before the process starts its
// first server, and not again while one runs.
func SetRaftTimeouts(minElection, maxElection, heartbeat time.Duration) error {
	switch {
	case heartbeat <= 0:
		return fmt.Errorf("raft heartbeat %v: must be positive", heartbeat)
	case minElection < 3*heartbeat:
		return fmt.Errorf("raft election timeout %v: must be at least three heartbeats (%v)", minElection, 3*heartbeat)
	case maxElection <= minElection:
		return fmt.Errorf("raft election timeouts %v to %v: the maximum must be above the minimum", minElection, maxElection)
	}
	minElectionTimeout, maxElectionTimeout, hbInterval = minElection, maxElection, heartbeat
	return nil
}
