package wazevo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/engine/wazevo/backend"
	"github.com/tetratelabs/wazero/internal/engine/wazevo/ssa"
	"github.com/tetratelabs/wazero/internal/engine/wazevo/wazevoapi"
	"github.com/tetratelabs/wazero/internal/expctxkeys"
	"github.com/tetratelabs/wazero/internal/filecache"
	"github.com/tetratelabs/wazero/internal/platform"
	"github.com/tetratelabs/wazero/internal/u32"
	"github.com/tetratelabs/wazero/internal/u64"
	"github.com/tetratelabs/wazero/internal/wasm"
)

var crc = crc32.MakeTable(crc32.Castagnoli)

// fileCacheKey returns a key for the file cache.
// In order to avoid collisions with the existing compiler, we do not use m.ID directly,
// but instead we rehash it with magic.
//
// meshd patch: the enabled features are part of the key, since a cache hit
// skips the validation of the function bodies (see
// engine.ValidatesFunctionBodiesBeforeCompiling) and validity depends on them.
func fileCacheKey(m *wasm.Module, features api.CoreFeatures) (ret filecache.Key) {
	s := sha256.New()
	s.Write(m.ID[:])
	s.Write(magic)
	binary.LittleEndian.PutUint64(ret[:8], uint64(features))
	s.Write(ret[:8])
	// Write the CPU features so that we can cache the compiled module for the same CPU.
	// This prevents the incompatible CPU features from being used.
	cpu := platform.CpuFeatures.Raw()
	// Reuse the `ret` buffer to write the first 8 bytes of the CPU features so that we can avoid the allocation.
	binary.LittleEndian.PutUint64(ret[:8], cpu)
	s.Write(ret[:8])
	// Finally, write the hash to the ret buffer.
	s.Sum(ret[:0])
	return
}

func (e *engine) addCompiledModule(module *wasm.Module, cm *compiledModule) (c *compiledModule, err error) {
	c = e.addCompiledModuleToMemory(module, cm)
	if !module.IsHostModule && e.fileCache != nil {
		err = e.addCompiledModuleToCache(module, c)
	}
	return
}

func (e *engine) getCompiledModule(module *wasm.Module, listeners []experimental.FunctionListener, ensureTermination bool) (cm *compiledModule, ok bool, err error) {
	cm, ok = e.getCompiledModuleFromMemory(module, true)
	if ok {
		module.SetCodeWritesTables(cm.codeWritesTables) // meshd patch
		return
	}
	cm, ok, err = e.getCompiledModuleFromCache(module)
	if ok {
		module.SetCodeWritesTables(cm.codeWritesTables) // meshd patch
		cm.parent = e
		cm.module = module
		cm.sharedFunctions = e.sharedFunctions
		cm.ensureTermination = ensureTermination
		cm.offsets = wazevoapi.NewModuleContextOffsetData(module, len(listeners) > 0)
		if len(listeners) > 0 {
			cm.listeners = listeners
			cm.listenerBeforeTrampolines = make([]*byte, len(module.TypeSection))
			cm.listenerAfterTrampolines = make([]*byte, len(module.TypeSection))
			for i := range module.TypeSection {
				typ := &module.TypeSection[i]
				before, after := e.getListenerTrampolineForType(typ)
				cm.listenerBeforeTrampolines[i] = before
				cm.listenerAfterTrampolines[i] = after
			}
		}
		e.addCompiledModuleToMemory(module, cm)
		ssaBuilder := ssa.NewBuilder()
		machine := newMachine()
		be := backend.NewCompiler(context.Background(), machine, ssaBuilder)
		cm.executables.compileEntryPreambles(module, machine, be)

		// Set the finalizer.
		e.setFinalizer(cm.executables, executablesFinalizer)
	}
	return
}

func (e *engine) addCompiledModuleToMemory(m *wasm.Module, cm *compiledModule) *compiledModule {
	e.mux.Lock()
	defer e.mux.Unlock()
	if c, ok := e.compiledModules[m.ID]; ok {
		c.refCount++
		return c.compiledModule
	}
	e.compiledModules[m.ID] = &compiledModuleWithCount{compiledModule: cm, refCount: 1}
	if len(cm.executable) > 0 {
		e.addCompiledModuleToSortedList(cm)
	}
	return cm
}

func (e *engine) getCompiledModuleFromMemory(module *wasm.Module, increaseRefCount bool) (cm *compiledModule, ok bool) {
	e.mux.Lock()
	defer e.mux.Unlock()

	cmWithCount, ok := e.compiledModules[module.ID]
	if ok {
		cm = cmWithCount.compiledModule
		if increaseRefCount {
			cmWithCount.refCount++
		}
	}
	return
}

func (e *engine) addCompiledModuleToCache(module *wasm.Module, cm *compiledModule) (err error) {
	if e.fileCache == nil || module.IsHostModule {
		return
	}
	key := fileCacheKey(module, e.features)
	if err = e.fileCache.Add(key, serializeCompiledModule(e.wazeroVersion, cm)); err != nil {
		err = fmt.Errorf("compilationcache: writing entry %x: %w", key[:], err)
	}
	return
}

// getCompiledModuleFromCache returns the module's compiled code from the
// file cache, if it holds it.
//
// meshd patch: whatever is wrong with the entry, it is a miss, never an
// error for the module: an entry that cannot be opened is left alone, one
// that is stale (another version wrote it) or damaged (anything
// deserializeCompiledModule refuses: truncated, rewritten, unreadable) is
// deleted, so that the module, compiled from its bytes, is written back. A
// damaged entry and any failure to open or delete one are returned as err
// with hit false, for the caller to report (reportCacheError) and compile.
func (e *engine) getCompiledModuleFromCache(module *wasm.Module) (cm *compiledModule, hit bool, err error) {
	if e.fileCache == nil || module.IsHostModule {
		return
	}

	// Check if the entries exist in the external cache.
	key := fileCacheKey(module, e.features)
	cached, hit, err := e.fileCache.Get(key)
	if err != nil {
		return nil, false, fmt.Errorf("compilationcache: opening entry %x: %w", key[:], err)
	} else if !hit {
		return nil, false, nil
	}

	// Otherwise, we hit the cache on external cache.
	// We retrieve *code structures from `cached`.
	var staleCache bool
	// Note: cached.Close is ensured to be called in deserializeCodes.
	cm, staleCache, err = deserializeCompiledModule(e.wazeroVersion, cached)
	if err == nil && !staleCache {
		return cm, true, nil
	}
	if err != nil {
		err = fmt.Errorf("compilationcache: entry %x is damaged, deleted and compiled again: %w", key[:], err)
	}
	if derr := e.fileCache.Delete(key); derr != nil {
		err = errors.Join(err, fmt.Errorf("compilationcache: deleting entry %x: %w", key[:], derr))
	}
	return nil, false, err
}

// reportCacheError passes err, a failure of the file cache that
// CompileModule worked around, to the handler of
// experimental.WithCompilationCacheErrorHandler in ctx, if any (meshd patch).
func reportCacheError(ctx context.Context, err error) {
	if h, ok := ctx.Value(expctxkeys.CompilationCacheErrorHandlerKey{}).(func(error)); ok && h != nil {
		h(err)
	}
}

var magic = []byte{'W', 'A', 'Z', 'E', 'V', 'O'}

func serializeCompiledModule(wazeroVersion string, cm *compiledModule) io.Reader {
	buf := bytes.NewBuffer(nil)
	// First 6 byte: WAZEVO header.
	buf.Write(magic)
	// Next 1 byte: length of version:
	buf.WriteByte(byte(len(wazeroVersion)))
	// Version of wazero.
	buf.WriteString(wazeroVersion)
	// Number of *code (== locally defined functions in the module): 4 bytes.
	buf.Write(u32.LeBytes(uint32(len(cm.functionOffsets))))
	for _, offset := range cm.functionOffsets {
		// The offset of this function in the executable (8 bytes).
		buf.Write(u64.LeBytes(uint64(offset)))
	}
	// The length of code segment (8 bytes).
	buf.Write(u64.LeBytes(uint64(len(cm.executable))))
	headerEnd := buf.Len()
	// meshd patch: zeros up to the next multiple of platform.CodeFileAlign,
	// so that the code can be mapped from the file (deserializeCompiledModule).
	buf.Write(make([]byte, codePadding(buf.Len())))
	// Append the native code.
	buf.Write(cm.executable)
	codeEnd := buf.Len()
	// Append checksum.
	checksum := crc32.Checksum(cm.executable, crc)
	buf.Write(u32.LeBytes(checksum))
	if sm := cm.sourceMap; len(sm.executableOffsets) > 0 {
		buf.WriteByte(1) // indicates that source map is present.
		l := len(sm.wasmBinaryOffsets)
		buf.Write(u64.LeBytes(uint64(l)))
		executableAddr := uintptr(unsafe.Pointer(&cm.executable[0]))
		for i := 0; i < l; i++ {
			buf.Write(u64.LeBytes(sm.wasmBinaryOffsets[i]))
			// executableOffsets is absolute address, so we need to subtract executableAddr.
			buf.Write(u64.LeBytes(uint64(sm.executableOffsets[i] - executableAddr)))
		}
	} else {
		buf.WriteByte(0) // indicates that source map is not present.
	}
	// Catch clause table: number of try_tables (4 bytes), then for each:
	//   clause count (4 bytes), then for each clause: kind (1 byte) + tagIndex (4 bytes).
	buf.Write(u32.LeBytes(uint32(len(cm.catchClauseTable))))
	for _, clauses := range cm.catchClauseTable {
		buf.Write(u32.LeBytes(uint32(len(clauses))))
		for _, c := range clauses {
			buf.WriteByte(c.Kind)
			buf.Write(u32.LeBytes(c.TagIndex))
		}
	}
	// meshd patch: whether the code may write a table, 1 byte (0 or 1).
	if cm.codeWritesTables {
		buf.WriteByte(1)
	} else {
		buf.WriteByte(0)
	}
	// meshd patch: the checksum of the rest of the file, all but the
	// padding and the code (which has its own): the function offsets, the
	// source map and the catch clauses are checked too.
	b := buf.Bytes()
	buf.Write(u32.LeBytes(crc32.Update(crc32.Checksum(b[:headerEnd], crc), crc, b[codeEnd:])))
	return bytes.NewReader(buf.Bytes())
}

// codePadding is the number of zeros after off bytes of a cache file, to
// the next multiple of platform.CodeFileAlign (meshd patch).
func codePadding(off int) int {
	return (platform.CodeFileAlign - off%platform.CodeFileAlign) % platform.CodeFileAlign
}

// deserializeCompiledModule reads a cache entry written by
// serializeCompiledModule. An entry written by another version is stale;
// any other inconsistency is an error: the caller deletes the entry either
// way (getCompiledModuleFromCache).
//
// meshd patch: every length read from the entry is checked against what is
// left of it before anything is allocated, read or mapped (cacheFile), the
// function offsets and the source map against the code's length, and the
// rest of the entry against its checksum, so that no entry, truncated or
// overwritten with anything, is mapped past the file's end (which faults,
// SIGBUS, when the code is touched) or makes the engine misread it.
func deserializeCompiledModule(wazeroVersion string, reader io.ReadCloser) (cm *compiledModule, staleCache bool, err error) {
	defer reader.Close()
	r, err := newCacheFile(reader)
	if err != nil {
		return nil, false, err
	}
	var code []byte // mapped here: unmapped on error
	defer func() {
		if err != nil {
			if len(code) > 0 {
				_ = platform.MunmapCodeSegment(code)
			}
			cm = nil
		}
	}()

	var eightBytes [8]byte
	// The magic and the length of the version, then the version.
	header := make([]byte, len(magic)+1)
	if err = r.read(header, "header"); err != nil {
		return
	}
	if !bytes.Equal(header[:len(magic)], magic) {
		return nil, false, fmt.Errorf("compilationcache: invalid magic number %q", header[:len(magic)])
	}
	cachedVersion := make([]byte, header[len(magic)])
	if err = r.read(cachedVersion, "version"); err != nil {
		return
	}
	if string(cachedVersion) != wazeroVersion {
		return nil, true, nil
	}

	if err = r.read(eightBytes[:4], "number of functions"); err != nil {
		return
	}
	functionsNum := binary.LittleEndian.Uint32(eightBytes[:4])
	// The offset of each function in the executable, read at once (meshd
	// patch): eight bytes per read was a system call per function, some
	// 2,000 for a Go-built module.
	if err = r.fits(8*uint64(functionsNum), "executable offsets"); err != nil {
		return
	}
	offsets := make([]byte, 8*int(functionsNum))
	if err = r.read(offsets, "executable offsets"); err != nil {
		return
	}
	if err = r.read(eightBytes[:8], "executable size"); err != nil {
		return
	}
	executableLen := binary.LittleEndian.Uint64(eightBytes[:8])
	cm = &compiledModule{functionOffsets: make([]int, functionsNum), executables: &executables{}}
	for i := range cm.functionOffsets {
		offset := binary.LittleEndian.Uint64(offsets[8*i:])
		if offset >= executableLen {
			return nil, false, fmt.Errorf("compilationcache: function %d at offset %d, past the executable's %d bytes", i, offset, executableLen)
		}
		cm.functionOffsets[i] = int(offset)
	}

	// meshd patch: the code starts at the next multiple of
	// platform.CodeFileAlign. A cache file is mapped rather than read: the
	// code runs from the page cache, with no copy into fresh memory (which
	// the kernel must zero first), about a tenth of a warm start's CPU for
	// two Go modules. Elsewhere (another reader, another system) it is read.
	codeOff := r.off
	pad := int64(codePadding(int(codeOff)))
	if err = r.fits(executableLen, "executable"); err != nil {
		return
	}
	if err = r.fits(uint64(pad)+executableLen, "padding and executable"); err != nil {
		return
	}
	if f, ok := r.r.(*os.File); ok && executableLen > 0 {
		if executable, merr := platform.MmapCodeFile(f, r.base+codeOff+pad, int(executableLen)); merr == nil {
			cm.executable, code = executable, executable
			cm.fileMapped = true
			if err = r.skipMapped(f, pad+int64(executableLen)); err != nil {
				return
			}
			executableLen = 0 // mapped: skip the reading path below
		}
		// Not mapped (not Linux, or a file system mounted noexec): read it.
	}

	if executableLen > 0 {
		if err = r.skip(pad, "executable padding"); err != nil {
			return
		}
		executable, err := platform.MmapCodeSegment(int(executableLen))
		if err != nil {
			return nil, false, fmt.Errorf("compilationcache: error mmapping executable (len=%d): %v", executableLen, err)
		}
		cm.executable, code = executable, executable
		if err = r.readUnsummed(executable, "executable"); err != nil {
			return nil, false, err
		}
		if err = platform.MprotectCodeSegment(executable); err != nil {
			return nil, false, err
		}
	}
	if len(cm.executable) > 0 {
		expected, err := checksumCode(cm.executable)
		if err != nil {
			return nil, false, err
		}
		if err = r.read(eightBytes[:4], "checksum"); err != nil {
			return nil, false, err
		} else if checksum := binary.LittleEndian.Uint32(eightBytes[:4]); expected != checksum {
			return nil, false, fmt.Errorf("compilationcache: checksum mismatch (expected %d, got %d)", expected, checksum)
		}
	}

	if err = r.read(eightBytes[:1], "source map presence"); err != nil {
		return
	}
	switch eightBytes[0] {
	case 0:
	case 1:
		if err = r.read(eightBytes[:8], "source map length"); err != nil {
			return
		}
		sourceMapLen := binary.LittleEndian.Uint64(eightBytes[:8])
		if len(cm.executable) == 0 {
			return nil, false, errors.New("compilationcache: a source map without executable")
		}
		if err = r.fits(sourceMapLen, "source map"); err != nil { // 16 bytes each: no overflow below
			return
		}
		if err = r.fits(16*sourceMapLen, "source map"); err != nil {
			return
		}
		entries := make([]byte, 16*sourceMapLen)
		if err = r.read(entries, "source map"); err != nil {
			return
		}
		sm := &cm.sourceMap
		sm.wasmBinaryOffsets = make([]uint64, sourceMapLen)
		sm.executableOffsets = make([]uintptr, sourceMapLen)
		executableOffset := uintptr(unsafe.Pointer(&cm.executable[0]))
		for i := range sm.wasmBinaryOffsets {
			sm.wasmBinaryOffsets[i] = binary.LittleEndian.Uint64(entries[16*i:])
			executableRelativeOffset := binary.LittleEndian.Uint64(entries[16*i+8:])
			if executableRelativeOffset > uint64(len(cm.executable)) {
				return nil, false, fmt.Errorf("compilationcache: source map[%d] at executable offset %d, past its %d bytes", i, executableRelativeOffset, len(cm.executable))
			}
			// executableOffsets is absolute address, so we need to add executableOffset.
			sm.executableOffsets[i] = uintptr(executableRelativeOffset) + executableOffset
		}
	default:
		return nil, false, fmt.Errorf("compilationcache: invalid source map presence %d", eightBytes[0])
	}

	// Catch clause table.
	if err = r.read(eightBytes[:4], "catch clause table"); err != nil {
		return
	}
	tableLen := binary.LittleEndian.Uint32(eightBytes[:4])
	if err = r.fits(4*uint64(tableLen), "catch clause table"); err != nil {
		return
	}
	if tableLen > 0 {
		cm.catchClauseTable = make([][]wazevoapi.CatchClauseInstance, tableLen)
		for i := range cm.catchClauseTable {
			if err = r.read(eightBytes[:4], "catch clause count"); err != nil {
				return
			}
			clauseCount := binary.LittleEndian.Uint32(eightBytes[:4])
			if err = r.fits(5*uint64(clauseCount), "catch clauses"); err != nil {
				return
			}
			b := make([]byte, 5*int(clauseCount))
			if err = r.read(b, "catch clauses"); err != nil {
				return
			}
			clauses := make([]wazevoapi.CatchClauseInstance, clauseCount)
			for j := range clauses {
				clauses[j] = wazevoapi.CatchClauseInstance{
					Kind:     b[5*j],
					TagIndex: binary.LittleEndian.Uint32(b[5*j+1:]),
				}
			}
			cm.catchClauseTable[i] = clauses
		}
	}

	// meshd patch: whether the code may write a table.
	if err = r.read(eightBytes[:1], "table writes"); err != nil {
		return
	}
	switch eightBytes[0] {
	case 0:
	case 1:
		cm.codeWritesTables = true
	default:
		return nil, false, fmt.Errorf("compilationcache: invalid table writes byte %d", eightBytes[0])
	}

	// meshd patch: the checksum of all but the padding and the code, and
	// nothing after it.
	expected := r.sum
	if err = r.readUnsummed(eightBytes[:4], "entry checksum"); err != nil {
		return
	} else if checksum := binary.LittleEndian.Uint32(eightBytes[:4]); expected != checksum {
		return nil, false, fmt.Errorf("compilationcache: entry checksum mismatch (expected %d, got %d)", expected, checksum)
	}
	if r.left != 0 {
		return nil, false, fmt.Errorf("compilationcache: %d bytes after the entry's end", r.left)
	}
	return
}

// cacheFile reads a cache entry for deserializeCompiledModule (meshd
// patch). It knows how much of the entry is left, so that no length read
// from it is trusted further than the entry's size, and it checksums what
// it reads outside the code.
type cacheFile struct {
	r io.Reader
	// base is the file offset the entry starts at (an *os.File's); off
	// and left count the bytes read and left to read.
	base, off, left int64
	// sum is the checksum of the bytes read by read.
	sum uint32
}

// newCacheFile sizes reader: a regular file by its size, a reader in
// memory by its length; another is read into memory first.
func newCacheFile(reader io.Reader) (*cacheFile, error) {
	switch r := reader.(type) {
	case *os.File:
		fi, err := r.Stat()
		if err != nil {
			return nil, fmt.Errorf("compilationcache: error reading entry size: %v", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("compilationcache: entry is not a regular file (%v)", fi.Mode().Type())
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("compilationcache: error reading entry offset: %v", err)
		}
		return &cacheFile{r: r, base: off, left: max(fi.Size()-off, 0)}, nil
	case interface{ Len() int }: // bytes.Reader, strings.Reader, bytes.Buffer
		return &cacheFile{r: reader, left: int64(r.Len())}, nil
	}
	b, err := io.ReadAll(reader)
	if err != nil {
		return nil, fmt.Errorf("compilationcache: error reading entry: %v", err)
	}
	return &cacheFile{r: bytes.NewReader(b), left: int64(len(b))}, nil
}

// fits returns an error if n bytes, what the entry says come next, are
// more than what is left of it.
func (c *cacheFile) fits(n uint64, what string) error {
	if n > uint64(c.left) {
		return fmt.Errorf("compilationcache: %s of %d bytes at offset %d, past the entry's end (%d bytes)", what, n, c.off, c.off+c.left)
	}
	return nil
}

// read reads len(b) bytes into b and checksums them.
func (c *cacheFile) read(b []byte, what string) error {
	if err := c.readUnsummed(b, what); err != nil {
		return err
	}
	c.sum = crc32.Update(c.sum, crc, b)
	return nil
}

// readUnsummed reads len(b) bytes into b.
func (c *cacheFile) readUnsummed(b []byte, what string) error {
	if err := c.fits(uint64(len(b)), what); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.r, b); err != nil {
		return fmt.Errorf("compilationcache: error reading %s (%d bytes at offset %d): %v", what, len(b), c.off, err)
	}
	c.off += int64(len(b))
	c.left -= int64(len(b))
	return nil
}

// skip reads n bytes and discards them.
func (c *cacheFile) skip(n int64, what string) error {
	if err := c.fits(uint64(n), what); err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, c.r, n); err != nil {
		return fmt.Errorf("compilationcache: error reading %s (%d bytes at offset %d): %v", what, n, c.off, err)
	}
	c.off += n
	c.left -= n
	return nil
}

// skipMapped seeks f, c's file, n bytes on, past what was mapped of it.
func (c *cacheFile) skipMapped(f *os.File, n int64) error {
	if _, err := f.Seek(c.base+c.off+n, io.SeekStart); err != nil {
		return fmt.Errorf("compilationcache: seeking past the executable: %v", err)
	}
	c.off += n
	c.left -= n
	return nil
}

// checksumCode returns the checksum of the code, mapped from a cache file
// or read (meshd patch). A mapped file truncated since it was sized (only
// an outside writer truncates a file in place: wazero's file cache
// replaces entries by rename and deletes them, and a mapping keeps the file
// it was made from) faults where it is read past the new end: that fault
// is an error here, not a crash of the process.
func checksumCode(code []byte) (sum uint32, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compilationcache: fault reading the executable (the entry changed while mapped): %v", r)
		}
	}()
	return crc32.Checksum(code, crc), nil
}
