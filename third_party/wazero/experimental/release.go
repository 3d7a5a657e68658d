package experimental

// ReleaseSource drops what a compiled module (a wazero.CompiledModule)
// keeps of its binary (meshd patch): its function bodies, which compiled
// code no longer needs, and, when no instruction can read them (the module
// has no data count section), its data segments. It reports whether the
// data went: the module can then only be instantiated under WithRestore,
// and InstantiateModule fails otherwise. The binary's memory is freed once
// the caller holds no slice of it either. False, and nothing dropped, for
// anything but a wazero.CompiledModule.
func ReleaseSource(compiled any) bool {
	r, ok := compiled.(interface{ ReleaseSource() bool })
	return ok && r.ReleaseSource()
}

// ReleaseCodePages drops a compiled module's machine code from the
// process's resident memory when it runs from a compilation cache file
// (meshd patch): the pages stay in the system's page cache, shared and
// reclaimable, and the next call into the module maps back those it
// touches (PopulateCodePages maps them all at once). It reports whether
// there was such a mapping; code compiled in this process is in anonymous
// memory, which it leaves alone. Safe while calls run: they fault the
// pages back.
func ReleaseCodePages(compiled any) (bool, error) {
	r, ok := compiled.(interface{ ReleaseCodePages() (bool, error) })
	if !ok {
		return false, nil
	}
	return r.ReleaseCodePages()
}

// PopulateCodePages maps a compiled module's machine code in at once
// (meshd patch), rather than a page fault at a time as calls touch it:
// after ReleaseCodePages, before the calls come back.
func PopulateCodePages(compiled any) error {
	r, ok := compiled.(interface{ PopulateCodePages() error })
	if !ok {
		return nil
	}
	return r.PopulateCodePages()
}
