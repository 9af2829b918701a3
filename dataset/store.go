package dataset

import (
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
)

// store holds the tokenized examples of one data file: in memory, or mapped
// from the cache. Tokens are little-endian uint32, the top bit set when the
// token is trained on; offsets (uint64, examples+1) delimit the examples;
// rows (uint64) give each example's row index in the data file.
type store struct {
	tokens  []byte
	offsets []byte
	rows    []byte
	stats   Stats
	dir     string // cache directory, "" in memory

	closeOnce sync.Once
	unmap     func() error
	cleanup   runtime.Cleanup
}

func (s *store) examples() int { return len(s.rows) / 8 }

// span returns the token range [lo, hi) of example i.
func (s *store) span(i int) (lo, hi int) {
	return int(binary.LittleEndian.Uint64(s.offsets[8*i:])), int(binary.LittleEndian.Uint64(s.offsets[8*i+8:]))
}

func (s *store) length(i int) int {
	lo, hi := s.span(i)
	return hi - lo
}

func (s *store) token(k int) uint32 { return binary.LittleEndian.Uint32(s.tokens[4*k:]) }

// row returns the data file row index of example i.
func (s *store) row(i int) int { return int(binary.LittleEndian.Uint64(s.rows[8*i:])) }

// close unmaps the cache files; the store must not be used afterwards.
func (s *store) close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cleanup.Stop()
		if s.unmap != nil {
			err = s.unmap()
		}
		s.tokens, s.offsets, s.rows = nil, nil, nil
	})
	return err
}

// memBuilder collects examples in memory.
type memBuilder struct {
	tokens, offsets, rows []byte
}

// newMemBuilder sizes the token buffer for a data file of fileBytes bytes:
// a token stands for about four bytes of text and takes four bytes here, so
// a buffer the size of the file rarely needs to grow (gzip excepted).
func newMemBuilder(fileBytes int64) *memBuilder {
	return &memBuilder{
		tokens:  make([]byte, 0, min(max(fileBytes, 1<<16), 1<<32)),
		offsets: binary.LittleEndian.AppendUint64(nil, 0),
	}
}

func (b *memBuilder) add(ex built) error {
	b.tokens = slices.Grow(b.tokens, 4*len(ex.toks))
	for _, t := range ex.toks {
		b.tokens = binary.LittleEndian.AppendUint32(b.tokens, t)
	}
	b.offsets = binary.LittleEndian.AppendUint64(b.offsets, uint64(len(b.tokens)/4))
	b.rows = binary.LittleEndian.AppendUint64(b.rows, uint64(ex.src.Index))
	return nil
}

func (b *memBuilder) store(st Stats) *store {
	return &store{tokens: b.tokens, offsets: b.offsets, rows: b.rows, stats: st}
}
