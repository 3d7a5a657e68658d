// Copyright 2026 The meshd Authors
// Licensed under the Apache License, Version 2.0 (the "License").

package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// stagedBatch is the staging store of an atomic batch on a single-replica
// file stream (meshd). Upstream stages each such batch in a file store of
// its own: a directory, its metadata files, a message block and a flusher
// goroutine, created for the batch and removed after its commit, which
// cost an atomic publish of two messages about a millisecond of CPU. The
// staged messages are needed on disk only from the commit on: a crash
// halfway through writing the batch to the stream finishes it on restart
// from them (jetstream.go, the stream's recovery); a crash before the
// commit loses an uncommitted batch, which its publisher was never told
// was stored. So the messages are kept in memory while they arrive, and
// written to one file, <batches>/<hash>.stage, when the batch is ready for
// its commit (FlushAllPending, from readyForCommit), synced there when the
// server syncs every write (sync_interval: always) as upstream's staging
// store is. A batch of an encrypted account is staged as upstream does:
// this file is not encrypted.
type stagedBatch struct {
	*memStore
	path    string // the staging file
	sync    bool   // sync the file when it is written
	dios    *diskIOSemaphore
	written bool // the file was written (and is to be removed on Delete)
}

// stagedBatchExt ends the name of a staging file, after its batch's
// directory name (getBatchStoreDir).
const stagedBatchExt = ".stage"

// stagedBatchMagic starts a staging file: the format's name and version.
var stagedBatchMagic = []byte("meshd-batch-1\n")

// newStagedBatch returns the staging store of a batch whose upstream store
// directory would be dir (getBatchStoreDir).
func newStagedBatch(s *Server, dir string) (*stagedBatch, error) {
	ms, err := newMemStore(&StreamConfig{Name: _EMPTY_, Storage: MemoryStorage})
	if err != nil {
		return nil, err
	}
	return &stagedBatch{memStore: ms, path: dir + stagedBatchExt, sync: s.getOpts().SyncAlways, dios: s.diskIOSemaphore()}, nil
}

// Type is FileStorage: the stream's batch code persists every message of
// a batch on a file store, the commit's too, to survive a hard kill.
func (b *stagedBatch) Type() StorageType { return FileStorage }

// FlushAllPending writes the staged messages to the staging file (synced
// when the server syncs every write): after it a crash of the process, or
// under sync_interval always of the machine, halfway through the commit
// finds them on restart.
func (b *stagedBatch) FlushAllPending() error {
	if b.written {
		return nil
	}
	data, err := encodeStagedBatch(b.memStore)
	if err != nil {
		return err
	}
	b.dios.acquire()
	defer b.dios.release()
	if err := os.MkdirAll(filepath.Dir(b.path), defaultDirPerms); err != nil {
		return err
	}
	f, err := os.OpenFile(b.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, defaultFilePerms)
	if err != nil {
		return err
	}
	b.written = true // from here Delete removes it, whole or not
	_, err = f.Write(data)
	if err == nil && b.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Delete drops the staged messages and removes the staging file.
func (b *stagedBatch) Delete(inline bool) error {
	if b.written {
		b.dios.acquire()
		os.Remove(b.path)
		b.dios.release()
		b.written = false
	}
	return b.memStore.Delete(inline)
}

// encodeStagedBatch encodes the messages of ms, from its first sequence to
// its last: the magic, then per message the uvarint lengths of its
// subject, header and payload and their bytes, then the CRC-32 (IEEE,
// little-endian) of everything before it.
func encodeStagedBatch(ms *memStore) ([]byte, error) {
	var state StreamState
	ms.FastState(&state)
	var smv StoreMsg
	buf := append(make([]byte, 0, 512), stagedBatchMagic...)
	for seq := state.FirstSeq; seq <= state.LastSeq && state.Msgs > 0; seq++ {
		sm, err := ms.LoadMsg(seq, &smv)
		if err != nil {
			return nil, fmt.Errorf("staging batch message %d: %w", seq, err)
		}
		buf = binary.AppendUvarint(buf, uint64(len(sm.subj)))
		buf = binary.AppendUvarint(buf, uint64(len(sm.hdr)))
		buf = binary.AppendUvarint(buf, uint64(len(sm.msg)))
		buf = append(buf, sm.subj...)
		buf = append(buf, sm.hdr...)
		buf = append(buf, sm.msg...)
	}
	return binary.LittleEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf)), nil
}

// errStagedBatchCorrupt is the error of a staging file that is not whole.
var errStagedBatchCorrupt = errors.New("staged batch file corrupt")

// loadStagedBatch reads the staging file of the batch whose upstream store
// directory would be dir into a memory store, its messages at sequences 1
// to n as they were staged; an error wrapping os.ErrNotExist when there is
// none.
func loadStagedBatch(dir string) (StreamStore, error) {
	data, err := os.ReadFile(dir + stagedBatchExt)
	if err != nil {
		return nil, err
	}
	if len(data) < len(stagedBatchMagic)+4 || !bytes.HasPrefix(data, stagedBatchMagic) {
		return nil, errStagedBatchCorrupt
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errStagedBatchCorrupt
	}
	ms, err := newMemStore(&StreamConfig{Name: _EMPTY_, Storage: MemoryStorage})
	if err != nil {
		return nil, err
	}
	if err := decodeStagedBatch(ms, body[len(stagedBatchMagic):]); err != nil {
		ms.Stop()
		return nil, err
	}
	return ms, nil
}

// decodeStagedBatch stores in ms the messages encoded in rest (as
// encodeStagedBatch wrote them, without the magic and the checksum).
func decodeStagedBatch(ms *memStore, rest []byte) error {
	for len(rest) > 0 {
		var lens [3]uint64
		for i := range lens {
			v, k := binary.Uvarint(rest)
			if k <= 0 {
				return errStagedBatchCorrupt
			}
			lens[i], rest = v, rest[k:]
		}
		if n := uint64(len(rest)); lens[0] > n || lens[1] > n-lens[0] || lens[2] > n-lens[0]-lens[1] {
			return errStagedBatchCorrupt
		}
		take := func(n uint64) []byte { f := rest[:n]; rest = rest[n:]; return f }
		subj, hdr, msg := take(lens[0]), take(lens[1]), take(lens[2]) // in this order
		if _, _, err := ms.StoreMsg(string(subj), hdr, msg, 0); err != nil {
			return err
		}
	}
	return nil
}
