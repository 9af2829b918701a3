package collective

import (
	"encoding/binary"
	"math"
	"unsafe"
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

// F32ToBF16 rounds f to bfloat16, to nearest with ties to even. NaN stays
// NaN (quiet, sign kept); ±Inf stays ±Inf; values beyond bf16's range
// round to ±Inf.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToF32 widens a bfloat16 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToF16 rounds f to IEEE 754 half precision, to nearest with ties to
// even, with subnormals. NaN stays NaN (quiet, sign kept); ±Inf stays ±Inf;
// |f| ≥ 65520 rounds to ±Inf.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rem := m & (1<<shift - 1)
		r := m >> shift
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to Inf: correct rounding
	}
	return sign | uint16(r)
}

// F16ToF32 widens a half-precision value exactly.
func F16ToF32(h uint16) float32 { return f16Table[h] }

var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

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
				for i, x := range src {
					u[i] = F32ToBF16(x)
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
				for i, h := range u {
					dst[i] = math.Float32frombits(uint32(h) << 16)
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
				for i, h := range u {
					dst[i] += math.Float32frombits(uint32(h) << 16)
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
	i := 0
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

// localSet sets dst[i] = q(src[i]).
func localSet(e encoding, dst, src []float32) {
	src = src[:len(dst)]
	switch e {
	case encBF16:
		for i, x := range src {
			dst[i] = math.Float32frombits(uint32(F32ToBF16(x)) << 16)
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
		for i, x := range src {
			dst[i] += math.Float32frombits(uint32(F32ToBF16(x)) << 16)
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
		for i, x := range src {
			h := F32ToBF16(x)
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
