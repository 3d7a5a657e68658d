// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// meshdBatchServer runs a JetStream server on a fresh store directory, with
// sync_interval always when syncAlways and an encryption key when key is
// not empty, and a single-replica file stream TEST on foo that takes
// atomic batches; it returns the stream and the account's store directory.
func meshdBatchServer(t *testing.T, syncAlways bool, key string) (*Server, *stream, string) {
	t.Helper()
	opts := DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.SyncAlways = syncAlways
	opts.JetStreamKey = key
	s := RunServer(&opts)
	t.Cleanup(s.Shutdown)
	nc := clientConnectToServer(t, s)
	defer nc.Close()
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
	return s, mset, storeDir
}

// TestMeshdBatchStoreFollowsSyncPolicy: a single-replica file stream
// stages an atomic batch in memory and, when it is ready for its commit,
// in one file, synced only when the server syncs every write; either way
// readyForCommit leaves the whole batch in that file, so a crash of the
// process after it finds the batch to finish on restart, and Delete
// removes it. It replaces upstream's
// TestJetStreamAtomicBatchStoreReadyForCommitSyncs, which expects a file
// store of the batch's own that syncs whatever the policy.
func TestMeshdBatchStoreFollowsSyncPolicy(t *testing.T) {
	for _, syncAlways := range []bool{false, true} {
		_, mset, storeDir := meshdBatchServer(t, syncAlways, "")
		store, err := newBatchStore(mset, "staging", 1, FileStorage, storeDir, "TEST")
		require_NoError(t, err)
		staged, ok := store.(*stagedBatch)
		if !ok {
			t.Fatalf("the batch store is a %T, not staged", store)
		}
		require_Equal(t, staged.sync, syncAlways)
		require_Equal(t, store.Type(), FileStorage)
		hdr := genHeader(nil, "Nats-Batch-Id", "staging")
		for i, payload := range []string{"one", "", "three"} {
			seq, _, err := store.StoreMsg("foo", hdr, []byte(payload), 0)
			require_NoError(t, err)
			require_Equal(t, seq, uint64(i+1))
		}
		_, dir := getBatchStoreDir(storeDir, "TEST", "staging")
		if _, err := os.Stat(dir + stagedBatchExt); !os.IsNotExist(err) {
			t.Fatalf("the staging file exists before the commit: %v", err)
		}
		b := &atomicBatch{timer: time.NewTimer(time.Minute), store: store}
		require_True(t, b.readyForCommit() == nil)

		got, err := loadStagedBatch(dir)
		require_NoError(t, err)
		var state StreamState
		got.FastState(&state)
		require_Equal(t, state.Msgs, 3)
		var smv StoreMsg
		for i, payload := range []string{"one", "", "three"} {
			sm, err := got.LoadMsg(uint64(i+1), &smv)
			require_NoError(t, err)
			require_Equal(t, sm.subj, "foo")
			require_True(t, bytes.Equal(sm.hdr, hdr))
			require_Equal(t, string(sm.msg), payload)
		}
		got.Stop()

		require_NoError(t, store.Delete(true))
		if _, err := os.Stat(dir + stagedBatchExt); !os.IsNotExist(err) {
			t.Fatalf("the staging file outlives Delete: %v", err)
		}
	}
}

// TestMeshdBatchStoreEncrypted: an account whose streams are encrypted
// stages its batches as upstream does, in a file store of their own
// (encrypted with the stream); the staging file would not be.
func TestMeshdBatchStoreEncrypted(t *testing.T) {
	_, mset, storeDir := meshdBatchServer(t, false, "s3cr3t")
	store, err := newBatchStore(mset, "staging", 1, FileStorage, storeDir, "TEST")
	require_NoError(t, err)
	defer store.Delete(true)
	if _, ok := store.(*fileStore); !ok {
		t.Fatalf("the batch store of an encrypted account is a %T, not a file store", store)
	}
}

// TestMeshdStagedBatchCorrupt: a staging file that is not whole (cut
// short, a bit flipped, lengths past its end, another format) is refused
// with errStagedBatchCorrupt, never read as messages.
func TestMeshdStagedBatchCorrupt(t *testing.T) {
	ms, err := newMemStore(&StreamConfig{Name: _EMPTY_, Storage: MemoryStorage})
	require_NoError(t, err)
	for _, p := range []string{"a", "bb"} {
		_, _, err := ms.StoreMsg("foo", nil, []byte(p), 0)
		require_NoError(t, err)
	}
	good, err := encodeStagedBatch(ms)
	require_NoError(t, err)
	ms.Stop()

	flipped := bytes.Clone(good)
	flipped[len(stagedBatchMagic)+2] ^= 0x01
	// Lengths past the end, with a valid checksum.
	long := append(bytes.Clone(stagedBatchMagic), binary.AppendUvarint(nil, 1<<62)...)
	long = append(long, 0, 0)
	long = binary.LittleEndian.AppendUint32(long, crc32.ChecksumIEEE(long))
	// Two lengths that overflow when added.
	wrap := append(bytes.Clone(stagedBatchMagic), binary.AppendUvarint(nil, 1<<63)...)
	wrap = append(wrap, binary.AppendUvarint(nil, 1<<63)...)
	wrap = append(wrap, 0)
	wrap = binary.LittleEndian.AppendUint32(wrap, crc32.ChecksumIEEE(wrap))
	// A length whose uvarint is cut.
	cut := append(bytes.Clone(stagedBatchMagic), 0x80)
	cut = binary.LittleEndian.AppendUint32(cut, crc32.ChecksumIEEE(cut))

	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"cut short":         good[:len(good)-1],
		"bit flipped":       flipped,
		"past its end":      long,
		"lengths overflow":  wrap,
		"uvarint cut":       cut,
		"another format":    append([]byte("meshd-batch-9\n"), good[len(stagedBatchMagic):]...),
		"empty":             nil,
		"checksum only":     {1, 2, 3, 4},
		"magic, no payload": bytes.Clone(stagedBatchMagic),
	} {
		path := filepath.Join(dir, "b")
		require_NoError(t, os.WriteFile(path+stagedBatchExt, data, 0o600))
		if _, err := loadStagedBatch(path); !errors.Is(err, errStagedBatchCorrupt) {
			t.Errorf("%s: %v, want %v", name, err, errStagedBatchCorrupt)
		}
	}
	path := filepath.Join(dir, "good")
	require_NoError(t, os.WriteFile(path+stagedBatchExt, good, 0o600))
	got, err := loadStagedBatch(path)
	require_NoError(t, err)
	var state StreamState
	got.FastState(&state)
	require_Equal(t, state.Msgs, 2)
	if _, err := loadStagedBatch(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Errorf("no staging file: %v, want one that does not exist", err)
	}
}

// TestMeshdBatchRecoveryFromFileStore: a batch staged by an earlier
// version, in a file store of its own, and cut by a crash halfway through
// its commit, is still finished on restart.
func TestMeshdBatchRecoveryFromFileStore(t *testing.T) {
	meshdBatchRecovery(t, func(mset *stream, storeDir string) StreamStore {
		store, err := newBatchFileStore(mset, "uuid", storeDir, "TEST")
		require_NoError(t, err)
		return store
	})
}

// TestMeshdBatchRecoveryFromStagingFile: a batch staged in one file and
// cut by a crash halfway through its commit is finished on restart.
func TestMeshdBatchRecoveryFromStagingFile(t *testing.T) {
	meshdBatchRecovery(t, func(mset *stream, storeDir string) StreamStore {
		store, err := newBatchStore(mset, "uuid", 1, FileStorage, storeDir, "TEST")
		require_NoError(t, err)
		if _, ok := store.(*stagedBatch); !ok {
			t.Fatalf("the batch store is a %T, not staged", store)
		}
		return store
	})
}

// meshdBatchRecovery stages a batch of three messages in the store
// newStore makes, gets it ready for its commit, stores its first message
// in the stream as a commit cut by a crash would have, stops the server
// without cleaning the batch up, and checks that the restarted server
// holds the whole batch, the last message carrying the commit.
func meshdBatchRecovery(t *testing.T, newStore func(mset *stream, storeDir string) StreamStore) {
	s, mset, storeDir := meshdBatchServer(t, false, "")
	store := newStore(mset, storeDir)
	var hdrs [][]byte
	for seq := 1; seq <= 3; seq++ {
		hdr := genHeader(nil, "Nats-Batch-Id", "uuid")
		hdr = genHeader(hdr, "Nats-Batch-Sequence", strconv.Itoa(seq))
		if seq == 3 {
			hdr = genHeader(hdr, "Nats-Batch-Commit", "1")
		}
		hdrs = append(hdrs, hdr)
		_, _, err := store.StoreMsg("foo", hdr, []byte("m"+strconv.Itoa(seq)), 0)
		require_NoError(t, err)
	}
	b := &atomicBatch{timer: time.NewTimer(time.Minute), store: store}
	require_True(t, b.readyForCommit() == nil)
	require_NoError(t, mset.processJetStreamMsg("foo", _EMPTY_, hdrs[0], []byte("m1"), 0, 0, nil, false, true))
	store.Stop()

	port, sd := s.opts.Port, s.StoreDir()
	s.Shutdown()
	s = RunJetStreamServerOnPort(port, sd)
	defer s.Shutdown()
	mset, err := s.globalAccount().lookupStream("TEST")
	require_NoError(t, err)
	state := mset.state()
	require_Equal(t, state.Msgs, 3)
	for seq := uint64(1); seq <= 3; seq++ {
		sm, err := mset.getMsg(seq)
		require_NoError(t, err)
		require_Equal(t, string(sm.Data), "m"+strconv.FormatUint(seq, 10))
		require_Equal(t, string(getHeader("Nats-Batch-Sequence", sm.Header)), strconv.FormatUint(seq, 10))
		if seq == 3 {
			require_Equal(t, string(getHeader("Nats-Batch-Commit", sm.Header)), "1")
		}
	}
	// The staging is gone with the batches directory.
	if _, err := os.Stat(filepath.Join(storeDir, streamsDir, "TEST", batchesDir)); !os.IsNotExist(err) {
		t.Errorf("the batches directory outlives the recovery: %v", err)
	}
}
