// Copyright 2026 The meshd Authors; adapted from upstream's
// jetstream_batching_test.go, Copyright 2025-2026 The NATS Authors.
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestMeshdAtomicBatchPublishFinalSyncState is upstream's
// TestJetStreamAtomicBatchPublishFinalSyncState with the staging checked
// as meshd stages a batch: in one file, whole before the commit, and
// synced under sync_interval always. The stream's final sync, the ack
// after it and the trace of its failure are checked as upstream does.
func TestMeshdAtomicBatchPublishFinalSyncState(t *testing.T) {
	type result struct {
		responseErr     error
		trace           MsgTraceJetStream
		traceBeforeSync bool
	}
	test := func(t *testing.T, mutate func(*stream, *fileStore) func()) result {
		storeDir := t.TempDir()
		conf := createConfFile(t, []byte(fmt.Sprintf(`
			listen: 127.0.0.1:-1
			jetstream: {
				store_dir: %q
				sync_interval: always
			}
		`, storeDir)))
		s, _ := RunServerWithConfig(conf)
		defer s.Shutdown()

		nc, _ := jsClientConnect(t, s)
		defer nc.Close()
		_, err := jsStreamCreate(t, nc, &StreamConfig{
			Name:               "TEST",
			Subjects:           []string{"state.*"},
			Storage:            FileStorage,
			Replicas:           1,
			AllowAtomicPublish: true,
		})
		require_NoError(t, err)
		mset, err := s.globalAccount().lookupStream("TEST")
		require_NoError(t, err)
		fs := mset.store.(*fileStore)

		reply := nats.NewInbox()
		sub, err := nc.SubscribeSync(reply)
		require_NoError(t, err)
		traceSub := natsSubSync(t, nc, nats.NewInbox())
		require_NoError(t, nc.Flush())

		first := nats.NewMsg("state.a")
		first.Header.Set(JSBatchId, "sync-state")
		first.Header.Set(JSBatchSeq, "1")
		require_NoError(t, nc.PublishMsg(first))
		require_NoError(t, nc.Flush())

		fs.syncMu.Lock()
		locked := true
		defer func() {
			if locked {
				fs.syncMu.Unlock()
			}
		}()
		commit := nats.NewMsg("state.b")
		commit.Reply = reply
		commit.Header.Set(JSBatchId, "sync-state")
		commit.Header.Set(JSBatchSeq, "2")
		commit.Header.Set(JSBatchCommit, "1")
		commit.Header.Set(MsgTraceDest, traceSub.Subject)
		require_NoError(t, nc.PublishMsg(commit))

		checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
			mset.mu.RLock()
			lseq := mset.lseq
			mset.mu.RUnlock()
			if lseq != 2 || !fs.syncOnFlush.Load() {
				return fmt.Errorf("atomic batch has not reached final sync")
			}
			return nil
		})
		mset.mu.RLock()
		batches := mset.batches
		mset.mu.RUnlock()
		batches.mu.Lock()
		batch := batches.atomic["sync-state"]
		batches.mu.Unlock()
		require_NotNil(t, batch)
		// meshd: the batch is staged in one file, written (and synced,
		// under sync_interval always) before the commit.
		staging, ok := batch.store.(*stagedBatch)
		require_True(t, ok)
		require_True(t, staging.written && staging.sync)
		staged, err := loadStagedBatch(strings.TrimSuffix(staging.path, stagedBatchExt))
		require_NoError(t, err)
		var stagedState StreamState
		staged.FastState(&stagedState)
		require_Equal(t, stagedState.Msgs, 2)
		staged.Stop()
		_, ackErr := sub.NextMsg(50 * time.Millisecond)
		require_Error(t, ackErr, nats.ErrTimeout)
		traceMsg, traceErr := traceSub.NextMsg(50 * time.Millisecond)
		traceBeforeSync := traceErr == nil
		if traceErr != nil {
			require_Error(t, traceErr, nats.ErrTimeout)
		}
		cleanup := mutate(mset, fs)
		if cleanup != nil {
			defer cleanup()
		}
		fs.syncMu.Unlock()
		locked = false
		if traceMsg == nil {
			traceMsg = natsNexMsg(t, traceSub, time.Second)
		}
		var traceEvent MsgTraceEvent
		require_NoError(t, json.Unmarshal(traceMsg.Data, &traceEvent))
		jsTrace := traceEvent.JetStream()
		require_NotNil(t, jsTrace)
		response, err := sub.NextMsg(250 * time.Millisecond)
		if err == nil {
			var ack JSPubAckResponse
			require_NoError(t, json.Unmarshal(response.Data, &ack))
			require_True(t, ack.Error == nil)
			require_Equal(t, ack.Sequence, 2)
			require_Equal(t, ack.BatchId, "sync-state")
			require_Equal(t, ack.BatchSize, 2)
		}
		require_True(t, fs.syncAlways.Load())
		require_False(t, fs.syncOnFlush.Load())
		return result{err, *jsTrace, traceBeforeSync}
	}

	t.Run("RespondsAfterSync", func(t *testing.T) {
		result := test(t, func(_ *stream, _ *fileStore) func() {
			return nil
		})
		require_NoError(t, result.responseErr)
		require_False(t, result.traceBeforeSync)
		require_Equal(t, result.trace.Error, _EMPTY_)
	})

	t.Run("RecordsSyncFailure", func(t *testing.T) {
		writeErr := errors.New("atomic batch final sync failed")
		var mset *stream
		result := test(t, func(s *stream, fs *fileStore) func() {
			mset = s
			fs.mu.RLock()
			lmb := fs.lmb
			fs.mu.RUnlock()
			lmb.mu.Lock()
			lmb.werr = writeErr
			lmb.mu.Unlock()
			return nil
		})
		require_Error(t, result.responseErr, nats.ErrTimeout)
		require_False(t, result.traceBeforeSync)
		require_Equal(t, result.trace.Error, writeErr.Error())
		checkFor(t, time.Second, 10*time.Millisecond, func() error {
			if !errors.Is(mset.getWriteErr(), writeErr) {
				return errors.New("stream did not record final sync failure")
			}
			return nil
		})
	})
}
