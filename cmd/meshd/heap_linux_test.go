package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// After hugeStartHeap, heap memory allocated and touched lies in huge pages
// (where the system runs transparent huge pages at all).
func TestHugeStartHeapGivesTheHeapHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skip("transparent huge pages are off here")
	}
	if strings.Contains(string(mode), "[always]") {
		// Every heap gets huge pages here, advised or not: the test would
		// pass without the feature, so it proves nothing.
		t.Skip("transparent huge pages are always on here: nothing to tell apart")
	}
	hugeStartHeap()
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = 1
	}
	lo := uint64(uintptr(unsafe.Pointer(&b[0])))
	hi := lo + uint64(len(b))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	// Sum AnonHugePages over the mappings the buffer overlaps (the advice
	// splits the heap's mapping at 2 MiB boundaries).
	sc := bufio.NewScanner(f)
	in, huge := false, 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if start, end, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			l, err1 := strconv.ParseUint(start, 16, 64)
			h, err2 := strconv.ParseUint(end, 16, 64)
			if err1 == nil && err2 == nil {
				in = l < hi && lo < h
				continue
			}
		}
		if in && fields[0] == "AnonHugePages:" {
			kb, _ := strconv.Atoi(fields[1])
			huge += kb
		}
	}
	if huge < 2048 {
		t.Fatalf("the heap mappings holding a fresh 8 MB buffer have %d KB in huge pages", huge)
	}
}
