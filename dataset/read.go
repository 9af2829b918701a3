package dataset

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Source is where a row came from.
type Source struct {
	// File is the path the row was read from, as given to OpenRows.
	File string `json:"file"`
	// Line is the 1-based line the row starts on (JSONL and CSV); 0 for JSON
	// arrays and Parquet files, whose rows are located by Index.
	Line int `json:"line,omitempty"`
	// Index is the 0-based position of the row among the file's rows, bad rows
	// included (blank JSONL lines and the CSV header are not rows).
	Index int `json:"index"`
}

// String is "file:line" when the row has a line, else "file[index]".
func (s Source) String() string {
	if s.Line > 0 {
		return s.File + ":" + strconv.Itoa(s.Line)
	}
	return s.File + "[" + strconv.Itoa(s.Index) + "]"
}

// Row is one record of a data file: its columns and where it came from.
// JSON numbers are json.Number, CSV cells strings, Parquet byte arrays strings.
type Row struct {
	Fields map[string]any
	Src    Source
}

// RowReader streams the rows of a data file.
type RowReader interface {
	// Next returns the next row, or io.EOF after the last one. A *RowError
	// (errors.Is(err, ErrBadRow)) is a malformed row: Next may be called again
	// for the rows after it. Any other error ends the file.
	Next() (Row, error)
	// Close releases the file.
	Close() error
}

// Kinds of data file, by extension.
const (
	kindJSONL   = ".jsonl"
	kindJSON    = ".json"
	kindCSV     = ".csv"
	kindParquet = ".parquet"
)

// fileKind returns the format of path from its extension, a trailing ".gz"
// meaning gzip compression.
func fileKind(path string) (kind string, gz bool, err error) {
	name := strings.ToLower(filepath.Base(path))
	if rest, ok := strings.CutSuffix(name, ".gz"); ok {
		name, gz = rest, true
	}
	switch ext := filepath.Ext(name); ext {
	case kindJSONL, kindJSON, kindCSV:
		return ext, gz, nil
	case ".ndjson":
		return kindJSONL, gz, nil
	case kindParquet:
		if gz {
			return "", false, fmt.Errorf("%w: %s: Parquet files are compressed inside; use the .parquet file itself", ErrFormat, path)
		}
		return ext, false, nil
	}
	return "", false, fmt.Errorf("%w: %s: want a .jsonl, .json, .csv or .parquet file (optionally .gz, except Parquet)", ErrFormat, path)
}

// OpenRows opens a data file for streaming by its extension: .jsonl (one JSON
// object per line; .ndjson too), .json (a JSON array of objects), .csv (a
// header row, then one row per record) or .parquet; each but Parquet may end
// in .gz. Files are never read whole, so a file larger than memory works.
func OpenRows(path string) (RowReader, error) {
	kind, gz, err := fileKind(path)
	if err != nil {
		return nil, err
	}
	if kind == kindParquet {
		return openParquet(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	var r io.Reader = f
	var zr *gzip.Reader
	if gz {
		zr, err = gzip.NewReader(bufio.NewReaderSize(f, 1<<16))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("dataset: %s: %w", path, err)
		}
		r = zr
	}
	closer := func() error {
		if zr != nil {
			zr.Close()
		}
		return f.Close()
	}
	switch kind {
	case kindJSONL:
		return newJSONLReader(path, r, closer), nil
	case kindJSON:
		rr, err := newJSONArrayReader(path, r, closer)
		if err != nil {
			closer()
			return nil, err
		}
		return rr, nil
	default:
		rr, err := newCSVReader(path, r, closer)
		if err != nil {
			closer()
			return nil, err
		}
		return rr, nil
	}
}
