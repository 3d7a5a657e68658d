//go:build !linux

package runtime

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is the allocator instances are created with: wazero's
// own (Go slices) where no mmap allocator is written.
var memoryAllocator experimental.MemoryAllocator
