package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rawFile builds a safetensors file by hand: length, header text, data.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t testing.TB, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32le(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// The golden byte strings below are the reference implementation's own
// serialization tests (safetensors/src/tensor.rs), written out by hand, so
// the writer is checked against the format rather than against our reader.
func TestWriteGoldenBytes(t *testing.T) {
	cases := []struct {
		name    string
		tensors []NamedTensor
		meta    map[string]string
		want    []byte
	}{
		{
			name:    "attn.0",
			tensors: []NamedTensor{{Name: "attn.0", DType: F32, Shape: []int64{1, 2, 3}, Data: f32le(0, 1, 2, 3, 4, 5)}},
			want: []byte{
				64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
				116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
				58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
				101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
				0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
			},
		},
		{
			name:    "forced alignment",
			tensors: []NamedTensor{{Name: "attn0", DType: F32, Shape: []int64{1, 1, 2, 3}, Data: f32le(0, 1, 2, 3, 4, 5)}},
			want: []byte{
				72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
				121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
				91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
				115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
				32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
				160, 64,
			},
		},
		{
			name: "empty",
			want: []byte{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32},
		},
		{
			name: "empty with metadata",
			meta: map[string]string{"framework": "pt"},
			want: []byte{
				40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
				95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
				116, 34, 125, 125, 32, 32, 32, 32, 32,
			},
		},
		{
			// Hand-written: descending dtype alignment, then name; escapes as serde_json.
			name: "order and escapes",
			tensors: []NamedTensor{
				{Name: "b", DType: U8, Shape: []int64{2}, Data: []byte{7, 8}},
				{Name: "a\"\n", DType: F16, Shape: []int64{}, Data: []byte{0x00, 0x3c}},
				{Name: "é", DType: F16, Shape: []int64{1}, Data: []byte{0x00, 0xc0}},
				{Name: "z", DType: I64, Shape: []int64{1, 0}, Data: nil},
			},
			meta: map[string]string{"format": "pt", "a": "<&>"},
			want: rawFile(`{"__metadata__":{"a":"<&>","format":"pt"},`+
				`"z":{"dtype":"I64","shape":[1,0],"data_offsets":[0,0]},`+
				`"a\"\n":{"dtype":"F16","shape":[],"data_offsets":[0,2]},`+
				`"é":{"dtype":"F16","shape":[1],"data_offsets":[2,4]},`+
				`"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}     `, // 259 bytes + 5 spaces
				[]byte{0x00, 0x3c, 0x00, 0xc0, 7, 8}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.safetensors")
			if err := Write(p, tc.tensors, tc.meta); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("bytes differ\n got %q\nwant %q", got, tc.want)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, nt := range tc.tensors {
				info, data, err := f.Tensor(nt.Name)
				if err != nil {
					t.Fatal(err)
				}
				if info.DType != nt.DType || !reflect.DeepEqual(info.Shape, nt.Shape) || !bytes.Equal(data, nt.Data) {
					t.Errorf("%q: got %v %v %v, want %v %v %v", nt.Name, info.DType, info.Shape, data, nt.DType, nt.Shape, nt.Data)
				}
			}
		})
	}
}

// A file written by hand, in the order and layout an older writer might use
// (name order, no padding), reads back as written.
func TestOpenHandWritten(t *testing.T) {
	hdr := `{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},"b":{"shape":[4],"data_offsets":[0,8],"dtype":"BF16"},"__metadata__":{"format":"pt","note":"hand"}}`
	data := append([]byte{0x80, 0x3f, 0x00, 0x40, 0x40, 0xc0, 0xc0, 0x7f}, f32le(1, -2, 0.5, 3)...)
	f, err := Open(writeTemp(t, "h.safetensors", rawFile(hdr, data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Names(); !reflect.DeepEqual(got, []string{"b", "w"}) {
		t.Errorf("Names = %v", got)
	}
	if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt", "note": "hand"}) {
		t.Errorf("Metadata = %v", got)
	}
	info, raw, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := ToFloat32(info.DType, raw)
	if !reflect.DeepEqual(info, Info{F32, []int64{2, 2}}) || !reflect.DeepEqual(v, []float32{1, -2, 0.5, 3}) {
		t.Errorf("w = %v %v", info, v)
	}
	info, raw, _ = f.Tensor("b")
	v, _ = ToFloat32(info.DType, raw)
	if info.DType != BF16 || v[0] != 1 || v[1] != 2 || v[2] != -3 || !math.IsNaN(float64(v[3])) {
		t.Errorf("b = %v %v", info, v)
	}
	if _, _, err := f.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: err = %v, want ErrNotFound", err)
	}
}

func TestRoundTrip(t *testing.T) {
	var tensors []NamedTensor
	for i, d := range []DType{Bool, U8, I8, F8E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64} {
		shape := []int64{int64(i%3 + 1), 3}
		n, _ := ByteLen(d, shape)
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(i*31 + j)
		}
		tensors = append(tensors, NamedTensor{Name: "t." + string(d), DType: d, Shape: shape, Data: data})
	}
	tensors = append(tensors,
		NamedTensor{Name: "scalar", DType: F32, Shape: []int64{}, Data: f32le(42)},
		NamedTensor{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: []byte{}},
		NamedTensor{Name: "packed", DType: F4, Shape: []int64{3, 2}, Data: []byte{1, 2, 3}},
	)
	meta := map[string]string{"format": "pt", "quote\"": "line\nbreak\x01"}
	p := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := Write(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.Metadata(), meta) {
		t.Errorf("metadata = %q, want %q", f.Metadata(), meta)
	}
	if len(f.Names()) != len(tensors) {
		t.Errorf("%d names, want %d", len(f.Names()), len(tensors))
	}
	for _, nt := range tensors {
		info, data, err := f.Tensor(nt.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != nt.DType || !reflect.DeepEqual(info.Shape, nt.Shape) || !bytes.Equal(data, nt.Data) {
			t.Errorf("%s: got %v %v, want %v %v", nt.Name, info.DType, info.Shape, nt.DType, nt.Shape)
		}
		// The writer's order keeps every tensor aligned to its element size.
		if sz := nt.DType.Size(); sz > 0 && len(data) > 0 {
			if o := offsetOf(f.buf, data); o%int64(sz) != 0 {
				t.Errorf("%s: data at file offset %d, not aligned to %d", nt.Name, o, sz)
			}
		}
	}
	// Writing the read-back tensors again gives the same bytes.
	var again []NamedTensor
	for _, n := range f.Names() {
		info, data, _ := f.Tensor(n)
		again = append(again, NamedTensor{n, info.DType, info.Shape, data})
	}
	p2 := filepath.Join(t.TempDir(), "rt2.safetensors")
	if err := Write(p2, again, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Error("rewriting the read-back tensors changed the file")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Tensor("scalar"); err == nil {
		t.Error("Tensor after Close succeeded")
	}
}

func offsetOf(buf, sub []byte) int64 {
	for i := range buf {
		if &buf[i] == &sub[0] {
			return int64(i)
		}
	}
	return -1
}

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name    string
		tensors []NamedTensor
		want    string
	}{
		{"size", []NamedTensor{{Name: "a", DType: F32, Shape: []int64{2}, Data: make([]byte, 7)}}, `tensor "a": 7 data bytes, expected 8`},
		{"dtype", []NamedTensor{{Name: "a", DType: "F12", Shape: []int64{1}, Data: make([]byte, 4)}}, `unknown dtype "F12"`},
		{"dup", []NamedTensor{{Name: "a", DType: U8, Shape: []int64{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int64{1}, Data: []byte{1}}}, `tensor "a" given twice`},
		{"reserved", []NamedTensor{{Name: "__metadata__", DType: U8, Shape: []int64{1}, Data: []byte{1}}}, "reserved"},
		{"negative", []NamedTensor{{Name: "a", DType: U8, Shape: []int64{-1}}}, "negative dimension"},
		{"bits", []NamedTensor{{Name: "a", DType: F4, Shape: []int64{3}, Data: []byte{1, 2}}}, "not a whole number of bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Write(filepath.Join(dir, "x.safetensors"), tc.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("failed write left %v behind", ents)
			}
		})
	}
}

func TestOpenCorrupt(t *testing.T) {
	good := rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	hugeLen := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
	cases := []struct {
		name, tensor, want string
		content            []byte
	}{
		{"empty file", "", "shorter than the 8-byte header length", nil},
		{"short file", "", "shorter than the 8-byte header length", []byte{1, 2, 3}},
		{"truncated data", "a", "run past the end of the data (4 bytes; file truncated?)", good[:len(good)-4]},
		{"truncated header", "", "runs past the end", good[:20]},
		{"header too long", "", "exceeds the 100000000-byte limit", append(hugeLen, '{', '}')},
		{"header length tiny", "", "too short for a JSON object", rawFile("{", nil)},
		{"not an object", "", "starts with '['", rawFile(`[1, 2]  `, nil)},
		{"not utf8", "", "not valid UTF-8", rawFile("{\"\xff\":1}", nil)},
		{"bad json", "", "header is not valid", rawFile(`{"a":}`, nil)},
		{"trailing garbage", "", "after the header object", rawFile(`{} {}`, nil)},
		{"bad dtype", "a", `unknown dtype "F12"`, rawFile(`{"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))},
		{"dtype not string", "a", "dtype is a number", rawFile(`{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))},
		{"overlap", "b", `overlap tensor "a" at [0, 8]`, rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12))},
		{"gap", "b", "leave a gap after data byte 8", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, make([]byte, 16))},
		{"size mismatch", "a", "span 8 bytes, expected 12 (F32, shape [3])", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8))},
		{"trailing data", "", "tensors cover 8 data bytes but the file holds 9", append(append([]byte{}, good...), 0)},
		{"duplicate tensor", "", `duplicate key "a"`, rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2))},
		{"duplicate field", "a", `duplicate key "shape"`, rawFile(`{"a":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1))},
		{"missing field", "a", `missing field "data_offsets"`, rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, nil)},
		{"unknown field", "a", `unexpected field "offsets"`, rawFile(`{"a":{"dtype":"U8","shape":[1],"offsets":[0,1]}}`, nil)},
		{"negative dim", "a", "shape[0] is -1", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, nil)},
		{"fractional dim", "a", "shape[0] is 1.5", rawFile(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, nil)},
		{"offsets backwards", "a", "end before they begin", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}`, nil)},
		{"three offsets", "a", "data_offsets has 3 values", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, nil)},
		{"shape overflow", "a", "overflows int64", rawFile(`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, nil)},
		{"offset overflow", "a", "below 2^63", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}`, nil)},
		{"metadata not string", "", `__metadata__: value of "n" is a number`, rawFile(`{"__metadata__":{"n":1}}`, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "bad.safetensors", tc.content)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Path != p || fe.Tensor != tc.tensor {
				t.Errorf("err = %#v, want a FormatError for %s, tensor %q", err, p, tc.tensor)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("err = %q, want it to name the file and contain %q", err, tc.want)
			}
		})
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope.safetensors"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}
