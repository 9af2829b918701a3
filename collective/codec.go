package collective

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/herdml/herd/internal/half"
)

// encoding is the wire format of buffer elements (little-endian).
type encoding uint8

const (
	encF32 encoding = iota
	encBF16
	encF16
)

func (e encoding) size() int {
	if e == encF32 {
		return 4
	}
	return 2
}

func (e encoding) String() string {
	switch e {
	case encBF16:
		return "bf16"
	case encF16:
		return "fp16"
	default:
		return "f32"
	}
}

// nativeLE reports whether float32 slices can be viewed as little-endian
// bytes directly.
var nativeLE = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// f32Bytes views f as bytes (no copy). Only for little-endian machines.
func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// bytesF32 views b as float32 when that is safe (little-endian machine,
// 4-byte aligned); ok is false otherwise.
func bytesF32(b []byte) (f []float32, ok bool) {
	if !nativeLE {
		return nil, false
	}
	if len(b) == 0 {
		return nil, true
	}
	if uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), true
}

// bytesU16 views b as little-endian uint16 when that is safe (little-endian
// machine, 2-byte aligned); ok is false otherwise.
func bytesU16(b []byte) (u []uint16, ok bool) {
	if !nativeLE {
		return nil, false
	}
	if len(b) < 2 {
		return nil, true
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2), true
}

// F32ToBF16 rounds f to bfloat16, to nearest with ties to even (see
// internal/half); the wire format of bf16 compression.
func F32ToBF16(f float32) uint16 { return half.FromF32ToBF16(f) }

// BF16ToF32 widens a bfloat16 exactly.
func BF16ToF32(h uint16) float32 { return half.BF16ToF32(h) }

// F32ToF16 rounds f to IEEE 754 half precision, to nearest with ties to
// even; the wire format of fp16 compression.
func F32ToF16(f float32) uint16 { return half.FromF32ToF16(f) }

// F16ToF32 widens a half-precision value exactly.
func F16ToF32(h uint16) float32 { return half.F16ToF32(h) }

// f16Table is indexed directly by the decoding loops.
var f16Table = half.F16Table()

// quantize rounds x to the wire format and back (identity for encF32).
func quantize(e encoding, x float32) float32 {
	switch e {
	case encBF16:
		return BF16ToF32(F32ToBF16(x))
	case encF16:
		return F16ToF32(F32ToF16(x))
	default:
		return x
	}
}

// encode writes src in format e into dst, which must hold len(src)*e.size()
// bytes, and returns the written prefix. For encF32 on little-endian
// machines callers should send f32Bytes(src) instead.
func encode(e encoding, dst []byte, src []float32) []byte {
	dst = dst[:len(src)*e.size()]
	if e != encF32 {
		if u, ok := bytesU16(dst); ok {
			u = u[:len(src)]
			if e == encBF16 {
				for i := simd16(len(src)); i < len(src); i++ {
					u[i] = F32ToBF16(src[i])
				}
				if n := simd16(len(src)); n > 0 {
					bf16EncX(&u[0], &src[0], n)
				}
			} else {
				for i, x := range src {
					u[i] = F32ToF16(x)
				}
			}
			return dst
		}
	}
	switch e {
	case encBF16:
		for i, x := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(x))
		}
	case encF16:
		for i, x := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(x))
		}
	default:
		for i, x := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
		}
	}
	return dst
}

// decodeSet sets dst[i] = decode(src[i]); len(src) must be len(dst)*e.size().
func decodeSet(e encoding, dst []float32, src []byte) {
	if e != encF32 {
		if u, ok := bytesU16(src[:2*len(dst)]); ok {
			u = u[:len(dst)]
			if e == encBF16 {
				n := simd16(len(u))
				if n > 0 {
					bf16SetX(&dst[0], &u[0], n)
				}
				for i := n; i < len(u); i++ {
					dst[i] = math.Float32frombits(uint32(u[i]) << 16)
				}
			} else {
				t := f16Table
				for i, h := range u {
					dst[i] = t[h]
				}
			}
			return
		}
	}
	switch e {
	case encBF16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case encF16:
		src = src[:2*len(dst)]
		t := f16Table
		for i := range dst {
			dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
		}
	default:
		if nativeLE {
			copy(f32Bytes(dst), src)
			return
		}
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}
}

// decodeAdd adds decode(src[i]) to dst[i].
func decodeAdd(e encoding, dst []float32, src []byte) {
	if e != encF32 {
		if u, ok := bytesU16(src[:2*len(dst)]); ok {
			u = u[:len(dst)]
			if e == encBF16 {
				n := simd16(len(u))
				if n > 0 {
					bf16AddX(&dst[0], &u[0], n)
				}
				for i := n; i < len(u); i++ {
					dst[i] += math.Float32frombits(uint32(u[i]) << 16)
				}
			} else {
				t := f16Table
				for i, h := range u {
					dst[i] += t[h]
				}
			}
			return
		}
	}
	switch e {
	case encBF16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] += math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case encF16:
		src = src[:2*len(dst)]
		t := f16Table
		for i := range dst {
			dst[i] += t[binary.LittleEndian.Uint16(src[2*i:])]
		}
	default:
		if f, ok := bytesF32(src[:4*len(dst)]); ok {
			addF32(dst, f)
			return
		}
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}
}

// addF32 sets dst[i] += src[i].
func addF32(dst, src []float32) {
	src = src[:len(dst)]
	i := simd16(len(dst))
	if i > 0 {
		addF32X(&dst[0], &src[0], i)
	}
	for ; i+8 <= len(dst); i += 8 {
		d := dst[i : i+8 : i+8]
		s := src[i : i+8 : i+8]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
		d[4] += s[4]
		d[5] += s[5]
		d[6] += s[6]
		d[7] += s[7]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

// localSet sets dst[i] = q(src[i]). dst may alias src.
func localSet(e encoding, dst, src []float32) {
	src = src[:len(dst)]
	switch e {
	case encBF16:
		n := simd16(len(dst))
		if n > 0 {
			bf16QSetX(&dst[0], &src[0], n)
		}
		for i := n; i < len(dst); i++ {
			dst[i] = math.Float32frombits(uint32(F32ToBF16(src[i])) << 16)
		}
	case encF16:
		t := f16Table
		for i, x := range src {
			dst[i] = t[F32ToF16(x)]
		}
	default:
		copy(dst, src)
	}
}

// localAdd sets dst[i] += q(src[i]).
func localAdd(e encoding, dst, src []float32) {
	src = src[:len(dst)]
	switch e {
	case encBF16:
		n := simd16(len(dst))
		if n > 0 {
			bf16QAddX(&dst[0], &src[0], n)
		}
		for i := n; i < len(dst); i++ {
			dst[i] += math.Float32frombits(uint32(F32ToBF16(src[i])) << 16)
		}
	case encF16:
		t := f16Table
		for i, x := range src {
			dst[i] += t[F32ToF16(x)]
		}
	default:
		addF32(dst, src)
	}
}

// encodeKeep encodes src into dst (like encode) and also writes the
// decoded values, q(src[i]), to out, in one pass. out may alias src.
func encodeKeep(e encoding, dst []byte, src, out []float32) []byte {
	dst = dst[:len(src)*e.size()]
	out = out[:len(src)]
	u, ok := bytesU16(dst)
	if e == encF32 || !ok {
		encode(e, dst, src)
		decodeSet(e, out, dst)
		return dst
	}
	u = u[:len(src)]
	if e == encBF16 {
		n := simd16(len(src))
		if n > 0 {
			bf16EncKeepX(&u[0], &src[0], &out[0], n)
		}
		for i := n; i < len(src); i++ {
			h := F32ToBF16(src[i])
			u[i] = h
			out[i] = math.Float32frombits(uint32(h) << 16)
		}
	} else {
		t := f16Table
		for i, x := range src {
			h := F32ToF16(x)
			u[i] = h
			out[i] = t[h]
		}
	}
	return dst
}

// simd16 is how many of n elements the vector kernels handle (a multiple
// of 16; 0 when there are none for this CPU).
func simd16(n int) int {
	if !useSIMD {
		return 0
	}
	return n &^ 15
}

// canonicalNaN is the NaN every NaN result is replaced with.
const canonicalNaN = 0x7fc00000

// canonNaN replaces every NaN in dst with the canonical quiet NaN. Which
// NaN an addition of two NaNs yields depends on operand order in machine
// code, which differs between code paths (and compilers); canonical NaNs
// keep results bit-identical across members and algorithms.
func canonNaN(dst []float32) {
	for i, x := range dst {
		if x != x {
			dst[i] = math.Float32frombits(canonicalNaN)
		}
	}
}

// finishChunk applies the op to a reduced chunk and canonicalizes NaNs:
// divide (Mean) then canonNaN, in one vector pass where there is one.
func finishChunk(dst []float32, op Op, n int) {
	k := simd16(len(dst))
	if k > 0 {
		mode, d := 0, float32(1)
		if op == Mean {
			if n&(n-1) == 0 {
				mode, d = 1, 1/float32(n)
			} else {
				mode, d = 2, float32(n)
			}
		}
		finishX(&dst[0], k, d, mode)
	}
	tail := dst[k:]
	if op == Mean {
		divide(tail, n)
	}
	canonNaN(tail)
}

// divide sets dst[i] /= n. Not inlined, so that a constant n of 1 is
// still a division (which quiets signalling NaNs, as the reference does).
//
//go:noinline
func divide(dst []float32, n int) {
	if n&(n-1) == 0 {
		// x/2^k == x*2^-k exactly (also for subnormal results, NaN and
		// Inf), and multiplication is several times faster.
		r := 1 / float32(n)
		for i := range dst {
			dst[i] *= r
		}
		return
	}
	d := float32(n)
	for i := range dst {
		dst[i] /= d
	}
}
