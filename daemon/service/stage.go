package service

import (
	"context"
	"crypto/sha256"
	"os"
	goruntime "runtime"
	"sync"
)

// Stage holds the services prepared ahead of their load: the slow part of
// a load (Builder.Prepare) done before the load takes the daemon's swap
// lock, and at start for every module at once. A load takes what was
// prepared for its file (Take), when it was prepared from the same bytes.
type Stage struct {
	b    *Builder
	wrap func(context.Context) (context.Context, func())

	mu       sync.Mutex
	prepared map[string]*Prepared   // by path
	compiled map[string]*compileJob // by path: CompileAll's, not finished yet
}

// NewStage returns an empty stage preparing with b. Work it starts on its
// own (CompileAll, PrepareAll) runs under wrap(ctx), which the daemon
// cancels at shutdown; stop is called when it is done.
func NewStage(b *Builder, wrap func(ctx context.Context) (_ context.Context, stop func())) *Stage {
	return &Stage{b: b, wrap: wrap, prepared: make(map[string]*Prepared)}
}

// compileJob is one of CompileAll's compiles: p is set when done is closed.
type compileJob struct {
	done chan struct{}
	p    *Prepared
}

// wait returns the job's result once it is done; nil for no job.
func (j *compileJob) wait() *Prepared {
	if j == nil {
		return nil
	}
	<-j.done
	return j.p
}

// CompileAll starts compiling and linking the modules of paths, as many
// at a time as there are CPUs, and returns at once; PrepareAll waits for
// each and opens its KV bucket. Called before NATS starts, it overlaps the
// slowest part of a start (reading each module's compiled code from the
// cache, or compiling it, and starting the guest's runtime in its first
// instance) with NATS's and the bus's. Its results stay apart from the
// prepared ones, so that a load the watcher starts meanwhile never takes a
// module that is compiled but not finished.
func (st *Stage) CompileAll(ctx context.Context, paths []string) {
	sem := make(chan struct{}, max(1, goruntime.NumCPU()))
	jobs := make(map[string]*compileJob)
	for _, path := range paths {
		job := &compileJob{done: make(chan struct{})}
		jobs[path] = job
		go func() {
			defer close(job.done)
			ctx, stop := st.wrap(ctx) // Shutdown stops an initialiser
			defer stop()
			// A slot for compiling, which takes a CPU; not for the
			// initialiser, which may sleep or loop until its timeout:
			// the other modules go on meanwhile.
			sem <- struct{}{}
			p := st.b.CompileFile(ctx, path)
			<-sem
			if p != nil {
				st.b.Link(ctx, p)
			}
			job.p = p // nil: the load reads it again and says why
		}()
	}
	st.mu.Lock()
	st.compiled = jobs
	st.mu.Unlock()
}

// WaitCompiled waits for CompileAll's compiles.
func (st *Stage) WaitCompiled() {
	st.mu.Lock()
	jobs := st.compiled
	st.mu.Unlock()
	for _, j := range jobs {
		j.wait()
	}
}

// PrepareAll prepares the modules of paths at once, as many at a time as
// there are CPUs, for the loads to Take: those CompileAll compiled are
// finished, the others prepared from the start. The checks and swaps then
// run one by one.
func (st *Stage) PrepareAll(ctx context.Context, paths []string) {
	st.mu.Lock()
	compiled := st.compiled
	st.compiled = nil
	st.mu.Unlock()
	results := make([]*Prepared, len(paths))
	sem := make(chan struct{}, max(1, goruntime.NumCPU()))
	var wg sync.WaitGroup
	for i, path := range paths {
		job := compiled[path]
		delete(compiled, path)
		wg.Go(func() {
			// Each module is finished as soon as its own compile is done,
			// while the others may still compile.
			p := job.wait()
			ctx, stop := st.wrap(ctx)
			defer stop()
			// The watcher started after CompileAll read the file: a change
			// in between would never be reported, so a file that changed
			// since is prepared again from its bytes now.
			if p != nil && changedSince(path, p.Stat) {
				p.Discard()
				p = nil
			}
			if p == nil {
				sem <- struct{}{} // for compiling only, as in CompileAll
				p = st.b.CompileFile(ctx, path)
				<-sem
				if p == nil {
					return // the load reads it again and says why
				}
				st.b.Link(ctx, p)
			}
			st.b.OpenKV(ctx, p)
			results[i] = p
		})
	}
	wg.Wait()
	for _, job := range compiled { // gone from the directory since
		if p := job.wait(); p != nil {
			p.Discard()
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, p := range results {
		if p != nil {
			st.prepared[paths[i]] = p
		}
	}
}

// PrepareAhead prepares path's module from wasm, unless that was done
// already, and keeps it for the load to Take. The caller holds the
// service's lock.
func (st *Stage) PrepareAhead(ctx context.Context, path string, wasm []byte) {
	p, sum := st.Take(path, wasm)
	if p == nil {
		p = st.b.Prepare(ctx, path, wasm, sum)
	}
	st.mu.Lock()
	old := st.prepared[path]
	st.prepared[path] = p
	st.mu.Unlock()
	if old != nil {
		old.Discard()
	}
}

// Peek returns what was prepared for path, or nil; it stays prepared.
func (st *Stage) Peek(path string) *Prepared {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.prepared[path]
}

// Discard closes what was prepared for path, if anything.
func (st *Stage) Discard(path string) {
	st.mu.Lock()
	p := st.prepared[path]
	delete(st.prepared, path)
	st.mu.Unlock()
	if p != nil {
		p.Discard()
	}
}

// Bytes returns the bytes prepared for path, if any, so that a load does
// not read the file again.
func (st *Stage) Bytes(path string) []byte {
	if p := st.Peek(path); p != nil {
		return p.Wasm
	}
	return nil
}

// Take returns the service prepared for path from the bytes wasm, or nil,
// and the sha256 of wasm. Whatever was prepared for path is no longer kept
// afterwards. When wasm is the very slice prepared (Bytes passes it on) it
// is not hashed again.
func (st *Stage) Take(path string, wasm []byte) (*Prepared, [sha256.Size]byte) {
	st.mu.Lock()
	p := st.prepared[path]
	delete(st.prepared, path)
	st.mu.Unlock()
	if p != nil && len(wasm) > 0 && len(p.Wasm) == len(wasm) && &p.Wasm[0] == &wasm[0] {
		return p, p.Hash
	}
	sum := sha256.Sum256(wasm)
	if p != nil && p.Hash != sum { // the file changed since: prepare it again
		p.Discard()
		p = nil
	}
	return p, sum
}

// Drop closes whatever was compiled or prepared and not taken.
func (st *Stage) Drop() {
	st.mu.Lock()
	left, compiled := st.prepared, st.compiled
	st.prepared, st.compiled = make(map[string]*Prepared), nil
	st.mu.Unlock()
	for _, p := range left {
		p.Discard()
	}
	for _, job := range compiled { // wait: a compile still running finishes first
		if p := job.wait(); p != nil {
			p.Discard()
		}
	}
}

// changedSince reports whether path's size or modification time differ
// from was (or path cannot be read).
func changedSince(path string, was os.FileInfo) bool {
	fi, err := os.Stat(path)
	return err != nil || was == nil || fi.Size() != was.Size() || !fi.ModTime().Equal(was.ModTime())
}
