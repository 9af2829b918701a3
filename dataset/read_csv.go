package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvReader reads a CSV file whose first record names the columns. Every
// cell is a string; a chat column may hold the messages as a JSON string.
type csvReader struct {
	path   string
	r      *csv.Reader
	close  func() error
	header []string
	index  int
}

func newCSVReader(path string, r io.Reader, close func() error) (*csvReader, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: empty file, want a header row naming the columns", ErrFormat, path)
		}
		return nil, fmt.Errorf("%w: %s: header row: %v", ErrFormat, path, err)
	}
	header = append([]string(nil), header...)
	header[0] = strings.TrimPrefix(header[0], "\uFEFF")
	seen := map[string]int{}
	for i, h := range header {
		if j, dup := seen[h]; dup {
			return nil, fmt.Errorf("%w: %s:1: column %q appears twice (columns %d and %d)", ErrFormat, path, h, j+1, i+1)
		}
		seen[h] = i
	}
	return &csvReader{path: path, r: cr, close: close, header: header}, nil
}

func (c *csvReader) Next() (Row, error) {
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return Row{}, io.EOF
	}
	src := Source{File: c.path, Index: c.index}
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return Row{}, fmt.Errorf("dataset: %s: %w", c.path, err)
		}
		c.index++
		src.Line = pe.StartLine
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return Row{}, rowErr(src, "%d fields, the header has %d", len(rec), len(c.header))
		}
		return Row{}, &RowError{Src: src, Reason: "malformed CSV", Err: pe.Err}
	}
	src.Line, _ = c.r.FieldPos(0)
	c.index++
	m := make(map[string]any, len(c.header))
	for i, h := range c.header {
		m[h] = rec[i]
	}
	return Row{Fields: m, Src: src}, nil
}

func (c *csvReader) Close() error { return c.close() }
