package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The oracle is PyTorch (Debian's python3-torch). Debian 12 packages no
// Python safetensors, so Python here writes and parses the container by hand
// with struct and json while torch produces and interprets the tensor bytes
// and does the reference dtype conversions.

func torchPython(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			t.Fatal("no python3: the torch oracle tests need python3 with torch (make test-deps)")
		}
	}
	if out, err := exec.Command(py, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Fatalf("python3 cannot import torch (make test-deps installs python3-torch): %v: %s", err, out)
	}
	return py
}

func runPython(t *testing.T, py, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
}

const convertScript = `
import sys, numpy as np, torch
inp, out = sys.argv[1], sys.argv[2]
x = torch.frombuffer(bytearray(open(inp, 'rb').read()), dtype=torch.float32)
bits = torch.from_numpy(np.arange(65536, dtype=np.uint16).view(np.int16).copy())
with open(out, 'wb') as f:
    f.write(x.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    f.write(x.to(torch.float16).view(torch.int16).numpy().tobytes())
    f.write(bits.view(torch.bfloat16).float().numpy().tobytes())
    f.write(bits.view(torch.float16).float().numpy().tobytes())
`

func TestConversionsMatchTorch(t *testing.T) {
	py := torchPython(t)
	r := rand.New(rand.NewPCG(7, 11))
	var xs []float32
	for _, v := range []float32{0, 1, -1, 0.1, 65504, 65519, 65520, 1e-8, 0x1p-24, 0x1p-25, 0x1.8p-25, 3.4e38, -3.4e38} {
		xs = append(xs, v, -v)
	}
	for _, b := range []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0x3f808000, 0x3f818000, 0x7f7fffff, 0x00000001, 0x807fffff} {
		xs = append(xs, math.Float32frombits(b))
	}
	for i := 0; i < 100000; i++ {
		b := r.Uint32()
		if i%2 == 0 {
			b = b&0x807fffff | uint32(95+r.IntN(50))<<23 // around and below the half range
		}
		xs = append(xs, math.Float32frombits(b))
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.f32"), filepath.Join(dir, "out.bin")
	raw, _ := FromFloat32(F32, xs)
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	runPython(t, py, convertScript, in, out)
	res, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	n := len(xs)
	if len(res) != 4*n+2*65536*4 {
		t.Fatalf("torch wrote %d bytes", len(res))
	}
	u16 := func(off, i int) uint16 { return binary.LittleEndian.Uint16(res[off+2*i:]) }
	f32 := func(off, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(res[off+4*i:])) }
	sameHalf := func(a, b uint16, nan func(uint16) bool) bool { return a == b || nan(a) && nan(b) }
	bfNaN := func(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }
	hNaN := func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
	bad := 0
	for i, x := range xs {
		if got, want := Float32ToBF16(x), u16(0, i); !sameHalf(got, want, bfNaN) {
			t.Errorf("Float32ToBF16(%g = %#08x) = %#04x, torch %#04x", x, math.Float32bits(x), got, want)
			bad++
		}
		if got, want := Float32ToF16(x), u16(2*n, i); !sameHalf(got, want, hNaN) {
			t.Errorf("Float32ToF16(%g = %#08x) = %#04x, torch %#04x", x, math.Float32bits(x), got, want)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many mismatches")
		}
	}
	for i := 0; i < 65536; i++ {
		sameF := func(a, b float32) bool {
			return math.Float32bits(a) == math.Float32bits(b) || math.IsNaN(float64(a)) && math.IsNaN(float64(b))
		}
		if got, want := BF16ToFloat32(uint16(i)), f32(4*n, i); !sameF(got, want) {
			t.Fatalf("BF16ToFloat32(%#04x) = %g, torch %g", i, got, want)
		}
		if got, want := F16ToFloat32(uint16(i)), f32(4*n+4*65536, i); !sameF(got, want) {
			t.Fatalf("F16ToFloat32(%#04x) = %g, torch %g", i, got, want)
		}
	}
}

// Python writes a file by hand (its own json layout, name order) from torch
// tensor bytes, plus the values as JSON; Go must read the same values.
const pyWriteScript = `
import sys, json, struct, torch
path, expect = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(0)
ts = {
    "embed.weight": torch.randn(4, 3, generator=g),
    "norm.weight": torch.randn(5, generator=g).to(torch.bfloat16),
    "head.weight": torch.randn(2, 2, generator=g).to(torch.float16),
    "pos": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
    "mask": torch.tensor([True, False, True]),
    "bytes": torch.tensor([0, 7, 255], dtype=torch.uint8),
    "scalar": torch.tensor(2.5, dtype=torch.float64),
}
names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
         torch.bool: "BOOL", torch.uint8: "U8", torch.float64: "F64"}
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(ts):
    t = ts[name]
    b = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({k: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in ts.items()}, open(expect, "w"))
`

// Python parses a Go-written file by hand and decodes every tensor with torch.
const pyReadScript = `
import sys, json, struct, torch
path, out = sys.argv[1], sys.argv[2]
buf = open(path, "rb").read()
(n,) = struct.unpack("<Q", buf[:8])
assert n % 8 == 0, "header not padded to 8"
header = json.loads(buf[8:8 + n])
meta = header.pop("__metadata__", {})
dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64,
          "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool, "F64": torch.float64}
res, end = {}, 0
for name, info in header.items():
    b, e = info["data_offsets"]
    end = max(end, e)
    dt = dtypes[info["dtype"]]
    data = bytearray(buf[8 + n + b:8 + n + e])
    if dt == torch.bfloat16:
        t = torch.frombuffer(data, dtype=torch.int16).view(torch.bfloat16) if data else torch.empty(0, dtype=dt)
    else:
        t = torch.frombuffer(data, dtype=dt) if data else torch.empty(0, dtype=dt)
    assert (8 + n + b) % t.element_size() == 0, name + " misaligned"
    t = t.reshape(info["shape"])
    res[name] = {"dtype": info["dtype"], "shape": list(t.shape), "values": t.double().flatten().tolist()}
assert 8 + n + end == len(buf), "data does not end the file"
json.dump({"metadata": meta, "tensors": res}, open(out, "w"))
`

type pyTensor struct {
	DType  string    `json:"dtype"`
	Shape  []int64   `json:"shape"`
	Values []float64 `json:"values"`
}

func decodeValues(t *testing.T, info Info, raw []byte) []float64 {
	t.Helper()
	var out []float64
	switch info.DType {
	case F32, BF16, F16:
		v, err := ToFloat32(info.DType, raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v {
			out = append(out, float64(x))
		}
	case F64:
		for i := 0; i < len(raw); i += 8 {
			out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
		}
	case I64:
		for i := 0; i < len(raw); i += 8 {
			out = append(out, float64(int64(binary.LittleEndian.Uint64(raw[i:]))))
		}
	case I32:
		for i := 0; i < len(raw); i += 4 {
			out = append(out, float64(int32(binary.LittleEndian.Uint32(raw[i:]))))
		}
	case U8, Bool:
		for _, b := range raw {
			out = append(out, float64(b))
		}
	default:
		t.Fatalf("no decoder for %s", info.DType)
	}
	if out == nil {
		out = []float64{}
	}
	return out
}

func TestReadFileWrittenByPython(t *testing.T) {
	py := torchPython(t)
	dir := t.TempDir()
	path, expect := filepath.Join(dir, "py.safetensors"), filepath.Join(dir, "expect.json")
	runPython(t, py, pyWriteScript, path, expect)
	var want map[string]pyTensor
	raw, _ := os.ReadFile(expect)
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata()["format"] != "pt" || len(f.Names()) != len(want) {
		t.Fatalf("metadata %v, names %v", f.Metadata(), f.Names())
	}
	for name, w := range want {
		info, data, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(info.Shape, w.Shape) {
			t.Errorf("%s: shape %v, torch %v", name, info.Shape, w.Shape)
		}
		if got := decodeValues(t, info, data); !reflect.DeepEqual(got, w.Values) {
			t.Errorf("%s (%s): %v, torch %v", name, info.DType, got, w.Values)
		}
	}
}

func TestPythonReadsFileWrittenByGo(t *testing.T) {
	py := torchPython(t)
	dir := t.TempDir()
	path, out := filepath.Join(dir, "go.safetensors"), filepath.Join(dir, "out.json")
	f32, _ := FromFloat32(F32, []float32{1.5, -2, 3.25, 1e-3, 7, 8})
	bf, _ := FromFloat32(BF16, []float32{0.1, -0.2, 300})
	h, _ := FromFloat32(F16, []float32{65504, -1e-5})
	i64 := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.MaxUint64), 42)
	tensors := []NamedTensor{
		{Name: "a.weight", DType: F32, Shape: []int64{2, 3}, Data: f32},
		{Name: "b", DType: BF16, Shape: []int64{3}, Data: bf},
		{Name: "c", DType: F16, Shape: []int64{1, 2}, Data: h},
		{Name: "ids", DType: I64, Shape: []int64{2}, Data: i64},
		{Name: "flags", DType: Bool, Shape: []int64{1}, Data: []byte{1}},
		{Name: "odd", DType: U8, Shape: []int64{3}, Data: []byte{1, 2, 3}},
		{Name: "none", DType: F32, Shape: []int64{0}, Data: nil},
	}
	meta := map[string]string{"format": "pt", "note": "written by herd"}
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	runPython(t, py, pyReadScript, path, out)
	var got struct {
		Metadata map[string]string   `json:"metadata"`
		Tensors  map[string]pyTensor `json:"tensors"`
	}
	raw, _ := os.ReadFile(out)
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Metadata, meta) {
		t.Errorf("python read metadata %v", got.Metadata)
	}
	for _, nt := range tensors {
		pt, ok := got.Tensors[nt.Name]
		if !ok {
			t.Errorf("python did not find %s", nt.Name)
			continue
		}
		want := decodeValues(t, Info{nt.DType, nt.Shape}, nt.Data)
		if pt.DType != string(nt.DType) || !reflect.DeepEqual(pt.Shape, nt.Shape) || !reflect.DeepEqual(pt.Values, want) {
			t.Errorf("%s: python read %s %v %v, wrote %s %v %v", nt.Name, pt.DType, pt.Shape, pt.Values, nt.DType, nt.Shape, want)
		}
	}
	if t.Failed() {
		t.Log(strings.Repeat("-", 20), string(raw))
	}
}
