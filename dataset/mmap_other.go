//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dataset

import (
	"io"
	"os"
)

// mapFile reads the whole file where mmap is not wired up; correct, but the
// tokens then live on the heap.
func mapFile(f *os.File, size int64) ([]byte, func([]byte) error, error) {
	buf := make([]byte, size)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, nil, err
	}
	return buf, nil, nil
}
