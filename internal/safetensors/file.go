package safetensors

import (
	"fmt"
	"maps"
	"os"
	"slices"
)

// Info describes one tensor: its element type and its row-major shape
// ([] for a scalar).
type Info struct {
	DType DType
	Shape []int64
}

// NumElements is the product of the shape (1 for a scalar).
func (i Info) NumElements() int64 {
	n, _ := NumElements(i.Shape) // shapes in an Info were validated
	return n
}

// File is one open safetensors file. Its methods may be called concurrently,
// except Close, which must come after every other call has returned.
type File struct {
	path  string
	buf   []byte             // the whole file, usually a read-only mapping
	unmap func([]byte) error // nil when buf is ordinary memory
	h     *header
	names []string
}

// Open memory-maps the safetensors file at path read-only and validates its
// header (see FormatError for what is checked). The tensor bytes are never
// copied onto the Go heap: Tensor hands out slices of the mapping.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s: not a regular file", path)
	}
	if st.Size() < 8 {
		return nil, formatErr(path, "", "file is %d bytes, shorter than the 8-byte header length (truncated?)", st.Size())
	}
	buf, unmap, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors: map %s: %w", path, err)
	}
	sf, err := newFile(path, buf, unmap)
	if err != nil {
		if unmap != nil {
			_ = unmap(buf)
		}
		return nil, err
	}
	return sf, nil
}

// newFile parses buf, the complete contents of the file named path.
func newFile(path string, buf []byte, unmap func([]byte) error) (*File, error) {
	h, err := parseHeader(path, buf)
	if err != nil {
		return nil, err
	}
	return &File{
		path:  path,
		buf:   buf,
		unmap: unmap,
		h:     h,
		names: slices.Sorted(maps.Keys(h.tensors)),
	}, nil
}

// Path is the path the file was opened from.
func (f *File) Path() string { return f.path }

// Names lists the tensor names in the file, sorted.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Has reports whether the file holds a tensor called name.
func (f *File) Has(name string) bool {
	_, ok := f.h.tensors[name]
	return ok
}

// Info describes the tensor called name without touching its data.
func (f *File) Info(name string) (Info, error) {
	e, ok := f.h.tensors[name]
	if !ok {
		return Info{}, fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.path)
	}
	return Info{DType: e.DType, Shape: slices.Clone(e.Shape)}, nil
}

// Tensor returns the tensor called name: its description and its raw
// little-endian row-major bytes. The bytes alias the read-only file mapping:
// they must not be written to (that faults) and are valid until Close.
func (f *File) Tensor(name string) (Info, []byte, error) {
	if f.buf == nil {
		return Info{}, nil, fmt.Errorf("safetensors: %s: tensor %q: file is closed", f.path, name)
	}
	e, ok := f.h.tensors[name]
	if !ok {
		return Info{}, nil, fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.path)
	}
	lo, hi := f.h.dataStart+e.begin, f.h.dataStart+e.end
	return Info{DType: e.DType, Shape: slices.Clone(e.Shape)}, f.buf[lo:hi:hi], nil
}

// Metadata is a copy of the header's "__metadata__" map (empty when absent).
func (f *File) Metadata() map[string]string {
	m := maps.Clone(f.h.metadata)
	if m == nil {
		m = map[string]string{}
	}
	return m
}

// Close unmaps the file; slices returned by Tensor must not be used after.
// Closing twice is harmless.
func (f *File) Close() error {
	buf, unmap := f.buf, f.unmap
	f.buf, f.unmap = nil, nil
	if buf == nil || unmap == nil {
		return nil
	}
	if err := unmap(buf); err != nil {
		return fmt.Errorf("safetensors: unmap %s: %w", f.path, err)
	}
	return nil
}
