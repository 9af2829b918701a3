package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// jsonlReader reads one JSON object per line. Blank lines are not rows.
type jsonlReader struct {
	path  string
	br    *bufio.Reader
	close func() error
	line  int
	index int
	buf   []byte
	dec   bytes.Reader
}

func newJSONLReader(path string, r io.Reader, close func() error) *jsonlReader {
	return &jsonlReader{path: path, br: bufio.NewReaderSize(r, 1<<20), close: close}
}

// readLine returns the next line without its line ending; the slice is valid
// until the next call.
func (j *jsonlReader) readLine() ([]byte, error) {
	j.buf = j.buf[:0]
	for {
		chunk, err := j.br.ReadSlice('\n')
		j.buf = append(j.buf, chunk...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(j.buf[:len(j.buf)-1], []byte{'\r'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(j.buf) > 0:
			return bytes.TrimSuffix(j.buf, []byte{'\r'}), nil
		default:
			return nil, err
		}
	}
}

func (j *jsonlReader) Next() (Row, error) {
	for {
		line, err := j.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Row{}, io.EOF
			}
			return Row{}, fmt.Errorf("dataset: %s:%d: %w", j.path, j.line+1, err)
		}
		j.line++
		if j.line == 1 {
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		src := Source{File: j.path, Line: j.line, Index: j.index}
		j.index++
		j.dec.Reset(line)
		fields, err := decodeObject(&j.dec)
		if err != nil {
			return Row{}, &RowError{Src: src, Reason: "not a JSON object", Err: err}
		}
		return Row{Fields: fields, Src: src}, nil
	}
}

func (j *jsonlReader) Close() error { return j.close() }

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// decodeObject decodes exactly one JSON object from r, numbers as json.Number.
func decodeObject(r io.Reader) (map[string]any, error) {
	d := json.NewDecoder(r)
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, cleanJSONErr(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("extra data after the object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("got %s", jsonKind(v))
	}
	return m, nil
}

func cleanJSONErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of JSON input")
	}
	return err
}

// jsonKind names the JSON type of a decoded value for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, float64, float32, int, int32, int64, uint32, uint64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// jsonArrayReader walks a JSON array of objects with a streaming decoder:
// only one element is in memory at a time.
type jsonArrayReader struct {
	path  string
	dec   *json.Decoder
	close func() error
	index int
	done  bool
}

func newJSONArrayReader(path string, r io.Reader, close func() error) (*jsonArrayReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(3)
	}
	dec := json.NewDecoder(br)
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: empty file, want a JSON array of objects", ErrFormat, path)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, cleanJSONErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("%w: %s: want a JSON array of objects, got %s (use .jsonl for one object per line)",
			ErrFormat, path, tokenKind(tok))
	}
	return &jsonArrayReader{path: path, dec: dec, close: close}, nil
}

func tokenKind(tok json.Token) string {
	if d, ok := tok.(json.Delim); ok {
		if d == '{' {
			return "an object"
		}
		return fmt.Sprintf("%q", string(d))
	}
	return jsonKind(tok)
}

func (j *jsonArrayReader) Next() (Row, error) {
	if j.done {
		return Row{}, io.EOF
	}
	src := Source{File: j.path, Index: j.index}
	if !j.dec.More() {
		// The closing bracket, then nothing but white space.
		if _, err := j.dec.Token(); err != nil {
			return Row{}, fmt.Errorf("dataset: %s: after element %d: %w", j.path, j.index, cleanJSONErr(err))
		}
		if _, err := j.dec.Token(); !errors.Is(err, io.EOF) {
			return Row{}, fmt.Errorf("dataset: %s: extra data after the array", j.path)
		}
		j.done = true
		return Row{}, io.EOF
	}
	var v any
	if err := j.dec.Decode(&v); err != nil {
		// A syntax error leaves the decoder where it cannot resynchronise.
		j.done = true
		return Row{}, fmt.Errorf("dataset: %s: element %d: %w", j.path, j.index, cleanJSONErr(err))
	}
	j.index++
	m, ok := v.(map[string]any)
	if !ok {
		return Row{}, rowErr(src, "not a JSON object: got %s", jsonKind(v))
	}
	return Row{Fields: m, Src: src}, nil
}

func (j *jsonArrayReader) Close() error { return j.close() }
