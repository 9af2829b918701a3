package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, the reference
// implementation's limit: a larger length is a corrupt or hostile file.
const MaxHeaderSize = 100_000_000

// metadataKey is the header key of the free-form string map; it cannot name a tensor.
const metadataKey = "__metadata__"

type entry struct {
	Info
	begin, end int64 // relative to the first data byte
}

type header struct {
	dataStart int64 // 8 + header length
	tensors   map[string]entry
	metadata  map[string]string
}

// parseHeader validates the whole file layout in buf (the complete file) as
// the reference implementation does, and more strictly: duplicate names and
// unknown fields are errors too, and every tensor must be exactly covered by
// its offsets, the data being contiguous from byte 0 to the end of the file.
func parseHeader(path string, buf []byte) (*header, error) {
	if len(buf) < 8 {
		return nil, formatErr(path, "", "file is %d bytes, shorter than the 8-byte header length (truncated?)", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	switch {
	case n > MaxHeaderSize:
		return nil, formatErr(path, "", "header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxHeaderSize)
	case n < 2:
		return nil, formatErr(path, "", "header length %d is too short for a JSON object", n)
	case n > uint64(len(buf)-8):
		return nil, formatErr(path, "", "header length %d runs past the end of the %d-byte file (truncated?)", n, len(buf))
	}
	raw := buf[8 : 8+n]
	if !utf8.Valid(raw) {
		return nil, formatErr(path, "", "header is not valid UTF-8")
	}
	if raw[0] != '{' {
		return nil, formatErr(path, "", "header starts with %q, expected '{'", raw[0])
	}
	h := &header{dataStart: int64(8 + n), tensors: map[string]entry{}}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	err := eachMember(dec, func(name string) error {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if name == metadataKey {
			m, err := parseMetadata(v)
			if err != nil {
				return &FormatError{Path: path, Msg: "__metadata__: " + err.Error()}
			}
			h.metadata = m
			return nil
		}
		e, err := parseEntry(v)
		if err != nil {
			return &FormatError{Path: path, Tensor: name, Msg: err.Error()}
		}
		h.tensors[name] = e
		return nil
	})
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the header object (padding must be spaces)")
		}
	}
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, formatErr(path, "", "header is not valid: %v", err)
	}
	if err := h.checkLayout(path, int64(len(buf))-h.dataStart); err != nil {
		return nil, err
	}
	return h, nil
}

// checkLayout checks that the tensors, ordered by offset, tile the data
// region exactly: no gap, no overlap, nothing out of bounds or left over.
func (h *header) checkLayout(path string, dataLen int64) error {
	names := make([]string, 0, len(h.tensors))
	for name := range h.tensors {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		ea, eb := h.tensors[a], h.tensors[b]
		if ea.begin != eb.begin {
			return cmp.Compare(ea.begin, eb.begin)
		}
		if ea.end != eb.end {
			return cmp.Compare(ea.end, eb.end)
		}
		return cmp.Compare(a, b)
	})
	var pos int64
	prev := ""
	for _, name := range names {
		e := h.tensors[name]
		want, err := ByteLen(e.DType, e.Shape)
		if err != nil {
			return formatErr(path, name, "%v", err)
		}
		if got := e.end - e.begin; got != want {
			return formatErr(path, name, "data_offsets [%d, %d] span %d bytes, expected %d (%s, shape %v)",
				e.begin, e.end, got, want, e.DType, e.Shape)
		}
		if e.end > dataLen {
			return formatErr(path, name, "data_offsets [%d, %d] run past the end of the data (%d bytes; file truncated?)",
				e.begin, e.end, dataLen)
		}
		switch {
		case e.begin < pos:
			p := h.tensors[prev]
			return formatErr(path, name, "data_offsets [%d, %d] overlap tensor %q at [%d, %d]",
				e.begin, e.end, prev, p.begin, p.end)
		case e.begin > pos:
			return formatErr(path, name, "data_offsets [%d, %d] leave a gap after data byte %d (tensors must be contiguous)",
				e.begin, e.end, pos)
		}
		pos = e.end
		prev = name
	}
	if pos != dataLen {
		return formatErr(path, "", "tensors cover %d data bytes but the file holds %d after the header", pos, dataLen)
	}
	return nil
}

// eachMember reads one JSON object from dec, calling fn with each key; fn
// must consume the value. Duplicate keys are an error, not last-one-wins.
func eachMember(dec *json.Decoder, fn func(key string) error) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("expected a JSON object, found %v", t)
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key := t.(string) // inside an object the decoder only yields string keys
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if err := fn(key); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing '}'
	return err
}

func newDecoder(raw []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	m := map[string]string{}
	dec := newDecoder(raw)
	err := eachMember(dec, func(key string) error {
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("value of %q is %s, expected a string", key, jsonKind(v))
		}
		m[key] = s
		return nil
	})
	return m, err
}

func parseEntry(raw json.RawMessage) (entry, error) {
	var e entry
	var haveDType, haveShape, haveOffsets bool
	dec := newDecoder(raw)
	err := eachMember(dec, func(key string) error {
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		switch key {
		case "dtype":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("dtype is %s, expected a string", jsonKind(v))
			}
			if !DType(s).Valid() {
				return fmt.Errorf("unknown dtype %q", s)
			}
			e.DType, haveDType = DType(s), true
		case "shape":
			shape, err := intList(v, "shape")
			if err != nil {
				return err
			}
			e.Shape, haveShape = shape, true
		case "data_offsets":
			off, err := intList(v, "data_offsets")
			if err != nil {
				return err
			}
			if len(off) != 2 {
				return fmt.Errorf("data_offsets has %d values, expected 2 ([begin, end])", len(off))
			}
			if off[1] < off[0] {
				return fmt.Errorf("data_offsets [%d, %d] end before they begin", off[0], off[1])
			}
			e.begin, e.end, haveOffsets = off[0], off[1], true
		default:
			return fmt.Errorf("unexpected field %q (expected dtype, shape, data_offsets)", key)
		}
		return nil
	})
	if err != nil {
		return e, err
	}
	for _, f := range []struct {
		have bool
		name string
	}{{haveDType, "dtype"}, {haveShape, "shape"}, {haveOffsets, "data_offsets"}} {
		if !f.have {
			return e, fmt.Errorf("missing field %q", f.name)
		}
	}
	if e.Shape == nil {
		e.Shape = []int64{}
	}
	return e, nil
}

func intList(v any, field string) ([]int64, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %s, expected an array of integers", field, jsonKind(v))
	}
	out := make([]int64, len(arr))
	for i, x := range arr {
		num, ok := x.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s[%d] is %s, expected a non-negative integer", field, i, jsonKind(x))
		}
		n, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s[%d] is %s, expected a non-negative integer below 2^63", field, i, num)
		}
		out[i] = n
	}
	return out, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}
