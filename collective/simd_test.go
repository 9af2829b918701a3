package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// specialBits are float32 bit patterns the kernels must get exactly right.
var specialBits = []uint32{
	0, 0x80000000, 0x7f800000, 0xff800000, // ±0, ±Inf
	0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff, 0x7fffffff, 0xffffffff, // NaNs
	0x00000001, 0x807fffff, 0x00008000, 0x00018000, // subnormals, ties
	0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, // ties to even, near ties
	0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, // max finite: rounds to Inf or not
}

func randomBits(rng *rand.Rand, n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		if rng.IntN(4) == 0 {
			f[i] = math.Float32frombits(specialBits[rng.IntN(len(specialBits))])
		} else {
			f[i] = math.Float32frombits(rng.Uint32())
		}
	}
	return f
}

func sameF32Bits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(isNaN(a[i]) && isNaN(b[i])) {
			return i
		}
	}
	return -1
}

// TestSIMDMatchesScalar: every vector kernel gives the scalar loop's bits,
// for all lengths around the 16-element blocks and odd offsets. NaN
// payloads of sums may differ (operand order; AllReduce canonicalizes
// them); conversions must match exactly, NaNs included.
func TestSIMDMatchesScalar(t *testing.T) {
	if !useSIMD {
		t.Skip("no vector kernels on this machine")
	}
	defer func(v bool) { useSIMD = v }(useSIMD)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 4099} {
		for _, off := range []int{0, 1, 3} {
			src := randomBits(rng, n+off)[off:]
			acc0 := randomBits(rng, n+off)[off:]
			// bf16 wire bytes (2-byte aligned: offsets in elements).
			run := func(simd bool) (enc []byte, dset, dadd, fadd, qset, qadd, keep []float32, keepEnc []byte) {
				useSIMD = simd
				enc = encode(encBF16, make([]byte, 2*n), src)
				dset = make([]float32, n)
				decodeSet(encBF16, dset, enc)
				dadd = append([]float32(nil), acc0...)
				decodeAdd(encBF16, dadd, enc)
				fadd = append([]float32(nil), acc0...)
				addF32(fadd, src)
				qset = make([]float32, n)
				localSet(encBF16, qset, src)
				qadd = append([]float32(nil), acc0...)
				localAdd(encBF16, qadd, src)
				keep = make([]float32, n)
				keepEnc = encodeKeep(encBF16, make([]byte, 2*n), src, keep)
				return
			}
			e0, s0, a0, f0, q0, qa0, k0, ke0 := run(false)
			e1, s1, a1, f1, q1, qa1, k1, ke1 := run(true)
			if string(e0) != string(e1) || string(ke0) != string(ke1) || string(e0) != string(ke0) {
				for i := 0; i < n; i++ {
					if e0[2*i] != e1[2*i] || e0[2*i+1] != e1[2*i+1] {
						t.Fatalf("n=%d off=%d: encode[%d] of %#08x: scalar %#02x%02x, simd %#02x%02x", n, off, i, math.Float32bits(src[i]), e0[2*i+1], e0[2*i], e1[2*i+1], e1[2*i])
					}
				}
				t.Fatalf("n=%d off=%d: encodeKeep bytes differ", n, off)
			}
			for _, c := range []struct {
				name string
				a, b []float32
			}{{"decodeSet", s0, s1}, {"decodeAdd", a0, a1}, {"addF32", f0, f1}, {"localSet", q0, q1}, {"localAdd", qa0, qa1}, {"encodeKeep", k0, k1}, {"keep=q", k0, q0}} {
				exact := c.name != "decodeAdd" && c.name != "addF32" && c.name != "localAdd"
				if i := sameF32Bits(c.a, c.b); i >= 0 || (exact && exactDiff(c.a, c.b) >= 0) {
					if i < 0 {
						i = exactDiff(c.a, c.b)
					}
					t.Fatalf("n=%d off=%d: %s[%d]: %#08x vs %#08x (src %#08x)", n, off, c.name, i, math.Float32bits(c.a[i]), math.Float32bits(c.b[i]), math.Float32bits(src[i]))
				}
			}
			// In place.
			useSIMD = true
			in := append([]float32(nil), src...)
			localSet(encBF16, in, in)
			if i := sameF32Bits(in, q0); i >= 0 {
				t.Fatalf("n=%d: localSet in place differs at %d", n, i)
			}
		}
	}
}

func exactDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestFinishChunkMatchesScalar: the vector divide/multiply and NaN
// canonicalization give the scalar bits, for Sum and Mean and group sizes
// that are and are not powers of two.
func TestFinishChunkMatchesScalar(t *testing.T) {
	if !useSIMD {
		t.Skip("no vector kernels on this machine")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 5, 16, 33, 1000} {
		for _, size := range []int{1, 2, 3, 4, 6, 7, 8} {
			for _, op := range []Op{Sum, Mean} {
				src := randomBits(rng, n)
				want := append([]float32(nil), src...)
				if op == Mean {
					divide(want, size)
				}
				canonNaN(want)
				got := append([]float32(nil), src...)
				finishChunk(got, op, size)
				if i := exactDiff(got, want); i >= 0 {
					t.Fatalf("n=%d size=%d %v: [%d] of %#08x: %#08x, want %#08x", n, size, op, i, math.Float32bits(src[i]), math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
		}
	}
}
