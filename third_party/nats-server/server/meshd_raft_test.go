// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"testing"
	"time"
)

func TestMeshdSetRaftTimeouts(t *testing.T) {
	minE, maxE, hb := minElectionTimeout, maxElectionTimeout, hbInterval
	t.Cleanup(func() { minElectionTimeout, maxElectionTimeout, hbInterval = minE, maxE, hb })
	for _, bad := range [][3]time.Duration{
		{2 * time.Second, 4 * time.Second, 0},
		{time.Second, 4 * time.Second, 500 * time.Millisecond},
		{2 * time.Second, 2 * time.Second, 500 * time.Millisecond},
	} {
		if err := SetRaftTimeouts(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("SetRaftTimeouts(%v, %v, %v): no error", bad[0], bad[1], bad[2])
		}
	}
	if minElectionTimeout != minE || maxElectionTimeout != maxE || hbInterval != hb {
		t.Fatalf("a refused call changed the timeouts")
	}
	if err := SetRaftTimeouts(2*time.Second, 4*time.Second, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if d := randElectionTimeout(); d < 2*time.Second || d >= 4*time.Second {
			t.Fatalf("election timeout %v outside 2s..4s", d)
		}
	}
	if hbInterval != 500*time.Millisecond {
		t.Fatalf("heartbeat %v, want 500ms", hbInterval)
	}
}
