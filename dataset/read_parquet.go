package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// parquetReader reads a Parquet file row group by row group, a few rows at a
// time, as maps (lists of structs become []any of map[string]any).
type parquetReader struct {
	path  string
	f     *os.File
	r     *parquet.GenericReader[any]
	buf   []any
	pos   int // next row of buf
	n     int // rows in buf
	index int
	err   error // the error that ended the last batch, returned when buf is drained
}

func openParquet(path string) (rr RowReader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dataset: %w", err)
	}
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	// The parquet package panics on schemas it cannot read into Go values.
	defer func() {
		if p := recover(); p != nil {
			f.Close()
			rr, err = nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, p)
		}
	}()
	return &parquetReader{path: path, f: f, r: parquet.NewGenericReader[any](pf), buf: make([]any, 64)}, nil
}

func (p *parquetReader) Next() (row Row, err error) {
	if p.pos == p.n {
		if p.err != nil {
			return Row{}, p.err
		}
		p.pos, p.n, p.err = 0, 0, nil
		clear(p.buf)
		func() {
			defer func() {
				if r := recover(); r != nil {
					p.err = fmt.Errorf("dataset: %s[%d]: %v", p.path, p.index, r)
				}
			}()
			p.n, p.err = p.r.Read(p.buf)
		}()
		if p.err != nil && !errors.Is(p.err, io.EOF) {
			p.err = fmt.Errorf("dataset: %s[%d]: %w", p.path, p.index+p.n, p.err)
		}
		if p.n == 0 {
			if p.err == nil {
				p.err = io.EOF
			}
			return Row{}, p.err
		}
	}
	v := p.buf[p.pos]
	p.pos++
	src := Source{File: p.path, Index: p.index}
	p.index++
	m, ok := normalizeParquet(v).(map[string]any)
	if !ok {
		return Row{}, rowErr(src, "not a record: got %s", jsonKind(v))
	}
	return Row{Fields: m, Src: src}, nil
}

// normalizeParquet turns byte arrays into strings, in place, recursively.
func normalizeParquet(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeParquet(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeParquet(e)
		}
	}
	return v
}

func (p *parquetReader) Close() error {
	p.r.Close()
	return p.f.Close()
}
