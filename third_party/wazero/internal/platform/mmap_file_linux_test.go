package platform

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// residentKB is the Rss of the mapping that starts at addr, from
// /proc/self/smaps.
func residentKB(t *testing.T, addr uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", addr)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if first, _, _ := strings.Cut(line, " "); strings.Contains(first, "-") && !strings.HasSuffix(first, ":") {
			in = strings.HasPrefix(line, start) // a mapping's header line
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return 0
}

// TestReleaseCodeFilePages (meshd patch): a mapped code file read whole is
// resident; released, its pages leave the process and read back the same.
func TestReleaseCodeFilePages(t *testing.T) {
	const size = 1 << 20
	path := filepath.Join(t.TempDir(), "code")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code, err := MmapCodeFile(f, 0, size)
	if err != nil {
		t.Skip(err) // a file system mounted noexec
	}
	defer MunmapCodeSegment(code)
	addr := uintptr(unsafe.Pointer(&code[0]))
	if kb := residentKB(t, addr); kb < size/1024/2 {
		t.Fatalf("mapped with MAP_POPULATE: %d KiB resident, want about %d", kb, size/1024)
	}
	ReleaseCodeFilePages(code)
	if kb := residentKB(t, addr); kb > size/1024/8 {
		t.Fatalf("released: %d KiB still resident", kb)
	}
	for i := 0; i < size; i += 4096 {
		if code[i] != data[i] {
			t.Fatalf("byte %d reads %d after the release, want %d", i, code[i], data[i])
		}
	}
}
