package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// nearestCode is the reference rounding for F32ToBF16/F32ToF16: the code
// (of x's sign) whose value is nearest to finite x, ties to the even code,
// found by binary search over the monotonic positive codes up to maxCode
// (the format's +Inf). Differences of neighbouring values are exact in
// float64.
func nearestCode(x float32, decode func(uint16) float32, maxCode uint16) uint16 {
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	a := math.Abs(float64(x))
	// largest code lo with decode(lo) <= a
	lo, hi := uint16(0), maxCode
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if float64(decode(mid)) <= a {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == maxCode {
		return sign | lo
	}
	dl := a - float64(decode(lo))
	dh := float64(decode(lo+1)) - a
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | (lo + 1)
	case lo&1 == 0:
		return sign | lo
	default:
		return sign | (lo + 1)
	}
}

func TestF16DecodeEncodeAllCodes(t *testing.T) {
	for c := range uint32(1 << 16) {
		h := uint16(c)
		f := F16ToF32(h)
		back := F32ToF16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("fp16 %#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func TestBF16DecodeEncodeAllCodes(t *testing.T) {
	for c := range uint32(1 << 16) {
		h := uint16(c)
		f := BF16ToF32(h)
		back := F32ToBF16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BF16ToF32(back))) || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("bf16 %#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func sampleFloats(rng *rand.Rand, n int) []float32 {
	out := make([]float32, 0, n)
	for len(out) < n {
		switch rng.IntN(4) {
		case 0: // any bit pattern
			out = append(out, math.Float32frombits(rng.Uint32()))
		case 1: // around 1
			out = append(out, float32(rng.NormFloat64()))
		case 2: // near fp16 limits
			out = append(out, float32(rng.Float64()*70000-35000))
		default: // tiny, fp16 subnormal range
			out = append(out, float32((rng.Float64()-0.5)*1e-4))
		}
	}
	return out
}

func TestRoundToNearestEven(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := sampleFloats(rng, 20000)
	// Exact ties.
	xs = append(xs,
		math.Float32frombits(0x3f808000), // bf16 tie, even below
		math.Float32frombits(0x3f818000), // bf16 tie, odd below: rounds up
		1+1.0/2048, 1+3.0/2048,           // fp16 ties
		65504, 65519.99, 65520, -65520, // fp16 max / overflow boundary
		float32(math.Ldexp(1, -25)), float32(math.Ldexp(1.5, -25)), float32(math.Ldexp(1, -24)), // fp16 subnormal edge
		0, float32(math.Copysign(0, -1)),
	)
	for _, x := range xs {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue
		}
		if got, want := F32ToBF16(x), bf16Ref(x); got != want {
			t.Errorf("F32ToBF16(%g [%#08x]) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
		if got, want := F32ToF16(x), f16Ref(x); got != want {
			t.Errorf("F32ToF16(%g [%#08x]) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
}

// bf16Ref: nearest bf16 by exhaustive scan, with overflow to Inf where
// |x| is at or beyond the halfway point above the largest finite value.
func bf16Ref(x float32) uint16 {
	const maxBits = 0x7f7f
	limit := math.Float32frombits(0x7f7f8000) // halfway to 2^128 in bf16 terms
	if a := float32(math.Abs(float64(x))); a >= limit {
		if x < 0 {
			return 0xff80
		}
		return 0x7f80
	}
	_ = maxBits
	return nearestCode(x, BF16ToF32, 0x7f80)
}

func f16Ref(x float32) uint16 {
	if a := math.Abs(float64(x)); a >= 65520 {
		if x < 0 {
			return 0xfc00
		}
		return 0x7c00
	}
	return nearestCode(x, F16ToF32, 0x7c00)
}

func TestSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name string
		enc  func(float32) uint16
		dec  func(uint16) float32
	}{{"bf16", F32ToBF16, BF16ToF32}, {"fp16", F32ToF16, F16ToF32}} {
		if got := tc.dec(tc.enc(inf)); got != inf {
			t.Errorf("%s: +Inf -> %v", tc.name, got)
		}
		if got := tc.dec(tc.enc(-inf)); got != -inf {
			t.Errorf("%s: -Inf -> %v", tc.name, got)
		}
		if got := tc.dec(tc.enc(nan)); !math.IsNaN(float64(got)) {
			t.Errorf("%s: NaN -> %v", tc.name, got)
		}
		// A NaN whose payload is only in the low mantissa bits must stay NaN.
		low := math.Float32frombits(0x7f800001)
		if got := tc.dec(tc.enc(low)); !math.IsNaN(float64(got)) {
			t.Errorf("%s: NaN(0x7f800001) -> %v", tc.name, got)
		}
		neg := math.Float32frombits(0xff800001)
		if got := tc.dec(tc.enc(neg)); !math.IsNaN(float64(got)) || !math.Signbit(float64(got)) {
			t.Errorf("%s: -NaN -> %v", tc.name, got)
		}
		if got := tc.dec(tc.enc(float32(math.Copysign(0, -1)))); got != 0 || !math.Signbit(float64(got)) {
			t.Errorf("%s: -0 -> %v", tc.name, got)
		}
	}
	if got := F16ToF32(F32ToF16(1e6)); got != inf {
		t.Errorf("fp16: 1e6 -> %v, want +Inf", got)
	}
	if got := BF16ToF32(F32ToBF16(math.MaxFloat32)); got != inf {
		t.Errorf("bf16: MaxFloat32 -> %v, want +Inf", got)
	}
}

// TestCompressionErrorBound: relative round-trip error is at most half an
// ulp of the format: 2^-8 for bf16 (7 stored mantissa bits), 2^-11 for
// fp16 in its normal range.
func TestCompressionErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		x := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4)))
		if x == 0 {
			continue
		}
		rel := func(y float32) float64 { return math.Abs(float64(y)-float64(x)) / math.Abs(float64(x)) }
		if e := rel(quantize(encBF16, x)); e > 1.0/256 {
			t.Fatalf("bf16 error %g for %g", e, x)
		}
		if a := math.Abs(float64(x)); a >= 6.103515625e-05 && a <= 65504 {
			if e := rel(quantize(encF16, x)); e > 1.0/2048 {
				t.Fatalf("fp16 error %g for %g", e, x)
			}
		}
	}
}

func TestEncodeDecodeBulk(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	src := sampleFloats(rng, 1001)
	for _, e := range []encoding{encF32, encBF16, encF16} {
		wire := make([]byte, len(src)*e.size()+1)
		for _, shift := range []int{0, 1} { // aligned and unaligned wire bytes
			w := encode(e, wire[shift:], src)
			got := make([]float32, len(src))
			decodeSet(e, got, w)
			for i := range src {
				if want := quantize(e, src[i]); math.Float32bits(got[i]) != math.Float32bits(want) && !(isNaN(got[i]) && isNaN(want)) {
					t.Fatalf("%s shift %d: decodeSet[%d] = %v, want %v", e, shift, i, got[i], want)
				}
			}
			acc := make([]float32, len(src))
			for i := range acc {
				acc[i] = float32(i)
			}
			decodeAdd(e, acc, w)
			for i := range src {
				want := float32(i) + quantize(e, src[i])
				if math.Float32bits(acc[i]) != math.Float32bits(want) && !(isNaN(acc[i]) && isNaN(want)) {
					t.Fatalf("%s shift %d: decodeAdd[%d] = %v, want %v", e, shift, i, acc[i], want)
				}
			}
		}
	}
}

func isNaN(f float32) bool { return f != f }

func BenchmarkDecodeAdd(b *testing.B) {
	const n = 256 << 10
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	for _, e := range []encoding{encF32, encBF16, encF16} {
		wire := encode(e, make([]byte, n*e.size()), src)
		acc := make([]float32, n)
		b.Run(e.String(), func(b *testing.B) {
			b.SetBytes(int64(n * 4))
			for b.Loop() {
				decodeAdd(e, acc, wire)
			}
		})
		b.Run(e.String()+"-encode", func(b *testing.B) {
			b.SetBytes(int64(n * 4))
			dst := make([]byte, n*e.size())
			for b.Loop() {
				encode(e, dst, src)
			}
		})
	}
}
