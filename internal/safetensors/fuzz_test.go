package safetensors

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the header parser: it must never panic,
// and whatever it accepts must hand out exactly-sized tensors that survive a
// write and re-read unchanged. Run longer with
// go test -fuzz FuzzOpen ./internal/safetensors/
func FuzzOpen(f *testing.F) {
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"c":{"dtype":"U8","shape":[],"data_offsets":[4,5]}}   `, []byte{1, 2, 3, 4, 5}))
	f.Add(rawFile(`{"z":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, []byte{0x21}))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,1]}}`, []byte{0}))
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<62))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := newFile("fuzz.safetensors", data, nil)
		if err != nil {
			return
		}
		var tensors []NamedTensor
		for _, name := range sf.Names() {
			info, raw, err := sf.Tensor(name)
			if err != nil {
				t.Fatalf("listed tensor %q: %v", name, err)
			}
			n, err := ByteLen(info.DType, info.Shape)
			if err != nil || n != int64(len(raw)) {
				t.Fatalf("tensor %q: %d bytes for %s %v (%v)", name, len(raw), info.DType, info.Shape, err)
			}
			tensors = append(tensors, NamedTensor{name, info.DType, info.Shape, raw})
		}
		if name := firstInvalidName(tensors); name != "" {
			return // the writer refuses names such as ""; the reader tolerates them
		}
		p := filepath.Join(t.TempDir(), "rt.safetensors")
		if err := Write(p, tensors, sf.Metadata()); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		back, err := Open(p)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer back.Close()
		if !reflect.DeepEqual(back.Names(), sf.Names()) || !reflect.DeepEqual(back.Metadata(), sf.Metadata()) {
			t.Fatalf("names/metadata changed: %v %v -> %v %v", sf.Names(), sf.Metadata(), back.Names(), back.Metadata())
		}
		for _, nt := range tensors {
			info, raw, _ := back.Tensor(nt.Name)
			if info.DType != nt.DType || !reflect.DeepEqual(info.Shape, nt.Shape) || !bytes.Equal(raw, nt.Data) {
				t.Fatalf("tensor %q changed in the round trip", nt.Name)
			}
		}
	})
}

func firstInvalidName(tensors []NamedTensor) string {
	for _, t := range tensors {
		if t.Name == "" {
			return "(empty)"
		}
	}
	return ""
}
