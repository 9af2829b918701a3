//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dataset

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps a cache file read-only and shared: pages come from the page
// cache on demand, so a large token shard costs address space, not heap.
func mapFile(f *os.File, size int64) ([]byte, func([]byte) error, error) {
	if size == 0 {
		return nil, nil, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("file of %d bytes does not fit the address space", size)
	}
	buf, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return buf, syscall.Munmap, nil
}
