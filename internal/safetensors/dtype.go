package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/herdml/herd/internal/half"
)

// DType is a safetensors element type, spelled as in the file header
// ("F32", "BF16", ...).
type DType string

// The element types of the safetensors format.
const (
	Bool    DType = "BOOL"
	F4      DType = "F4"      // 4-bit float (E2M1), packed two per byte.
	F6E2M3  DType = "F6_E2M3" // 6-bit float, packed.
	F6E3M2  DType = "F6_E3M2" // 6-bit float, packed.
	U8      DType = "U8"
	I8      DType = "I8"
	F8E5M2  DType = "F8_E5M2"
	F8E4M3  DType = "F8_E4M3"
	F8E8M0  DType = "F8_E8M0"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	C64     DType = "C64" // complex64: two F32.
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	invalid DType = ""
)

// dtypeInfo lists every dtype in the order of the reference implementation's
// Dtype enum (increasing alignment); Write orders tensors by descending rank so
// that every tensor's data stays aligned to its element size.
var dtypeInfo = map[DType]struct{ bits, rank int }{
	Bool: {8, 0}, F4: {4, 1}, F6E2M3: {6, 2}, F6E3M2: {6, 3},
	U8: {8, 4}, I8: {8, 5}, F8E5M2: {8, 6}, F8E4M3: {8, 7}, F8E8M0: {8, 8},
	I16: {16, 9}, U16: {16, 10}, F16: {16, 11}, BF16: {16, 12},
	I32: {32, 13}, U32: {32, 14}, F32: {32, 15}, C64: {64, 16},
	F64: {64, 17}, I64: {64, 18}, U64: {64, 19},
}

// Valid reports whether d is a dtype of the safetensors format.
func (d DType) Valid() bool {
	_, ok := dtypeInfo[d]
	return ok
}

// Bits is the size of one element in bits (4 or 6 for the packed sub-byte
// floats), or 0 for an unknown dtype.
func (d DType) Bits() int { return dtypeInfo[d].bits }

// Size is the size of one element in bytes, or 0 for an unknown dtype and for
// the sub-byte dtypes (F4, F6_*), whose sizes only exist per tensor: see ByteLen.
func (d DType) Size() int {
	b := dtypeInfo[d].bits
	if b%8 != 0 {
		return 0
	}
	return b / 8
}

func (d DType) String() string { return string(d) }

// NumElements is the product of shape's dimensions (1 for a scalar, shape []),
// or an error when a dimension is negative or the product overflows int64.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, s := range shape {
		if s < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", s, shape)
		}
		if s != 0 && n > math.MaxInt64/s {
			return 0, fmt.Errorf("shape %v overflows int64 elements", shape)
		}
		n *= s
	}
	return n, nil
}

// ByteLen is the number of data bytes a tensor of dtype d and the given shape
// occupies, as the reference implementation computes it (elements × bits / 8,
// which must be a whole number of bytes).
func ByteLen(d DType, shape []int64) (int64, error) {
	bits := int64(d.Bits())
	if bits == 0 {
		return 0, fmt.Errorf("unknown dtype %q", string(d))
	}
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	if n != 0 && n > math.MaxInt64/bits {
		return 0, fmt.Errorf("shape %v of %s overflows int64 bits", shape, d)
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("shape %v of %s is %d bits, not a whole number of bytes", shape, d, n*bits)
	}
	return n * bits / 8, nil
}

// Float32ToBF16 rounds f to bfloat16 with round-to-nearest-even; a NaN stays
// a NaN (see internal/half).
func Float32ToBF16(f float32) uint16 { return half.FromF32ToBF16(f) }

// BF16ToFloat32 widens a bfloat16 exactly.
func BF16ToFloat32(h uint16) float32 { return half.BF16ToF32(h) }

// Float32ToF16 rounds f to IEEE 754 binary16 with round-to-nearest-even,
// subnormals and infinities as IEEE does; a NaN stays a NaN.
func Float32ToF16(f float32) uint16 { return half.FromF32ToF16(f) }

// F16ToFloat32 widens an IEEE 754 binary16 exactly.
func F16ToFloat32(h uint16) float32 { return half.F16ToF32(h) }

// ToFloat32 decodes little-endian raw data of dtype d (F32, BF16, F16 or F64;
// F64 is rounded to nearest) into float32 values.
func ToFloat32(d DType, raw []byte) ([]float32, error) {
	size := d.Size()
	switch d {
	case F32, BF16, F16, F64:
	default:
		return nil, fmt.Errorf("safetensors: cannot convert %s to float32 (want F32, BF16, F16 or F64)", d)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("safetensors: %d bytes is not a whole number of %s elements", len(raw), d)
	}
	out := make([]float32, len(raw)/size)
	for i := range out {
		p := raw[i*size:]
		switch d {
		case F32:
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(p))
		case BF16:
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(p))
		case F16:
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(p))
		case F64:
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(p)))
		}
	}
	return out, nil
}

// FromFloat32 encodes values as little-endian raw data of dtype d (F32, BF16
// or F16), rounding to nearest even.
func FromFloat32(d DType, values []float32) ([]byte, error) {
	size := d.Size()
	switch d {
	case F32, BF16, F16:
	default:
		return nil, fmt.Errorf("safetensors: cannot convert float32 to %s (want F32, BF16 or F16)", d)
	}
	out := make([]byte, len(values)*size)
	for i, v := range values {
		p := out[i*size:]
		switch d {
		case F32:
			binary.LittleEndian.PutUint32(p, math.Float32bits(v))
		case BF16:
			binary.LittleEndian.PutUint16(p, Float32ToBF16(v))
		case F16:
			binary.LittleEndian.PutUint16(p, Float32ToF16(v))
		}
	}
	return out, nil
}

// Convert re-encodes little-endian raw data from dtype src to dtype dst, both
// among F32, BF16 and F16. Each value is rounded once (to nearest even): the
// 16-bit types widen to float32 exactly.
func Convert(dst, src DType, raw []byte) ([]byte, error) {
	if dst == src {
		switch dst {
		case F32, BF16, F16:
			return append([]byte(nil), raw...), nil
		}
	}
	if src == F64 {
		return nil, fmt.Errorf("safetensors: cannot convert F64 to %s (want F32, BF16 or F16 as source)", dst)
	}
	v, err := ToFloat32(src, raw)
	if err != nil {
		return nil, err
	}
	return FromFloat32(dst, v)
}
