// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"testing"
	"time"
)

// TestMeshdBatchStoreFollowsSyncPolicy: a single-replica file stream
// stages an atomic batch in a store that syncs before the commit only
// when the server syncs every write; either way readyForCommit leaves
// nothing of the batch unwritten to its files, so a crash of the process
// after it finds the batch to finish on restart. It replaces upstream's
// TestJetStreamAtomicBatchStoreReadyForCommitSyncs, which expects a sync
// whatever the policy.
func TestMeshdBatchStoreFollowsSyncPolicy(t *testing.T) {
	for _, syncAlways := range []bool{false, true} {
		opts := DefaultTestOptions
		opts.Port = -1
		opts.JetStream = true
		opts.StoreDir = t.TempDir()
		opts.SyncAlways = syncAlways
		s := RunServer(&opts)

		nc := clientConnectToServer(t, s)
		_, err := jsStreamCreate(t, nc, &StreamConfig{
			Name:               "TEST",
			Subjects:           []string{"foo"},
			Storage:            FileStorage,
			Replicas:           1,
			AllowAtomicPublish: true,
		})
		require_NoError(t, err)
		mset, err := s.globalAccount().lookupStream("TEST")
		require_NoError(t, err)
		mset.jsa.mu.RLock()
		storeDir := mset.jsa.storeDir
		mset.jsa.mu.RUnlock()

		store, err := newBatchStore(mset, "staging", 1, FileStorage, storeDir, "TEST")
		require_NoError(t, err)
		fs := store.(*fileStore)
		if got := fs.syncOnFlush.Load(); got != syncAlways {
			t.Fatalf("sync_always %v: the batch store syncs on flush: %v", syncAlways, got)
		}
		_, _, err = store.StoreMsg("foo", nil, []byte("payload"), 0)
		require_NoError(t, err)
		b := &atomicBatch{timer: time.NewTimer(time.Minute), store: store}
		require_True(t, b.readyForCommit() == nil)
		fs.mu.RLock()
		blks := append([]*msgBlock(nil), fs.blks...)
		fs.mu.RUnlock()
		require_NotEqual(t, len(blks), 0)
		for _, mb := range blks {
			mb.mu.RLock()
			pending, needSync := mb.pendingWriteSizeLocked(), mb.needSync
			mb.mu.RUnlock()
			require_Equal(t, pending, 0)
			if syncAlways {
				require_False(t, needSync)
			}
		}
		store.Delete(true)
		nc.Close()
		s.Shutdown()
	}
}
