// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// flushLoops counts the goroutines of open file stores.
func flushLoops() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("(*fileStore).flushStreamStateLoop("))
}

// A Raft group whose node cannot start (here: the server's system account
// went away, as it does while the server shuts down, after the group's log
// was made) leaves no file store open behind it.
func TestMeshdRaftGroupFailedStartStopsItsLog(t *testing.T) {
	c := createJetStreamClusterExplicit(t, "R3S", 3)
	defer c.shutdown()
	c.waitOnLeader()
	s := c.randomServer()
	js := s.getJetStream()

	var peers []string // the group's peers: the three servers
	for _, srv := range c.servers {
		srv.mu.RLock()
		peers = append(peers, srv.sys.shash[:idLen])
		srv.mu.RUnlock()
	}
	before := flushLoops()
	s.mu.Lock()
	sys := s.sys
	s.sys = nil
	s.mu.Unlock()
	rg := &raftGroup{Name: "meshd-failed-start", Peers: peers}
	_, err := js.createRaftGroup(globalAccountName, rg, false, FileStorage, pprofLabels{})
	s.mu.Lock()
	s.sys = sys
	s.mu.Unlock()
	if err == nil {
		t.Fatal("createRaftGroup without a system account: no error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for flushLoops() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d file stores open after the failed start, %d before", flushLoops(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
