package lora

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herdml/herd/internal/torch"
)

// nf4Mids are the thresholds of bitsandbytes' dQuantizeNF4 tree: the
// midpoints of adjacent NF4 values, written as decimal literals that round
// to float32 (a few land one ulp away from the float32 midpoint of the
// float32 code values, so they are taken from the kernel, not recomputed).
func nf4Mids() []float32 {
	return []float32{-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
		-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
		0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
		0.5016634166240692, 0.6427869200706482, 0.8614784181118011}
}

// probes returns values around every threshold plus random ones.
func probes(ths []float32, rng *rand.Rand) []float32 {
	var xs []float32
	for _, t := range ths {
		xs = append(xs, t, math.Nextafter32(t, 2), math.Nextafter32(t, -2))
	}
	for range 20000 {
		xs = append(xs, float32(rng.Float64()*2-1))
	}
	return append(xs, -1, 1, 0, float32(math.Copysign(0, -1)), -1.5, 1.5)
}

func TestNF4IndexIsNearestTiesDown(t *testing.T) {
	mids := nf4Mids()
	for _, x := range probes(mids, rand.New(rand.NewPCG(1, 2))) {
		want := byte(0)
		for _, m := range mids {
			if x > m {
				want++
			}
		}
		if got := nf4Index(x); got != want {
			t.Fatalf("nf4Index(%v) = %d, want %d", x, got, want)
		}
		// And it is a nearest code (on a midpoint both are).
		d := math.Abs(float64(x - nf4Code[want]))
		for _, c := range nf4Code {
			if math.Abs(float64(x-c)) < d-1e-7 {
				t.Fatalf("nf4Index(%v) = %d (%v), but %v is nearer", x, want, nf4Code[want], c)
			}
		}
	}
	if got := nf4Index(float32(math.NaN())); got != 0 {
		t.Fatalf("nf4Index(NaN) = %d, want 0 (bitsandbytes' tree)", got)
	}
}

func TestDynamicIndexMatchesBinarySearchRule(t *testing.T) {
	for i := 1; i < 256; i++ {
		if !(dynamicMap[i-1] < dynamicMap[i]) {
			t.Fatalf("dynamic map not strictly increasing at %d", i)
		}
	}
	if dynamicMap[127] != 0 || dynamicMap[255] != 1 {
		t.Fatalf("dynamic map: [127] = %v, [255] = %v, want 0 and 1", dynamicMap[127], dynamicMap[255])
	}
	mids := make([]float32, 255)
	for k := range mids {
		mids[k] = (dynamicMap[k] + dynamicMap[k+1]) * 0.5
	}
	xs := probes(mids, rand.New(rand.NewPCG(3, 4)))
	xs = append(xs, dynamicMap[:]...)
	for _, x := range xs {
		// Nearest, a tie going to the even index.
		want := 0
		for k, m := range mids {
			if x > m || (k%2 == 1 && x == m) {
				want++
			}
		}
		if got := dynamicIndex(x); int(got) != want {
			t.Fatalf("dynamicIndex(%v) = %d, want %d", x, got, want)
		}
	}
	if got := dynamicIndex(float32(math.NaN())); got != 0 {
		t.Fatalf("dynamicIndex(NaN) = %d, want 0", got)
	}
}

func TestQuantizeNF4Layout(t *testing.T) {
	// Block 0: absmax 2, values chosen on codes; block 1 (partial, 3
	// elements): an odd tail padded with a quantised zero.
	w := make([]float32, 67)
	w[0], w[1], w[2], w[3] = 2, -2, 0, 2*nf4Code[9]
	w[64], w[65], w[66] = -0.5, 0.25, 0.5
	q, err := QuantizeNF4(w, []int64{67}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Packed) != 34 || len(q.Absmax) != 2 {
		t.Fatalf("%d packed bytes, %d absmax; want 34 and 2", len(q.Packed), len(q.Absmax))
	}
	if q.Absmax[0] != 2 || q.Absmax[1] != 0.5 {
		t.Fatalf("absmax = %v", q.Absmax)
	}
	if q.Packed[0] != 0xF0 || q.Packed[1] != 0x79 || q.Packed[2] != 0x77 {
		t.Fatalf("packed[0:3] = %#x %#x %#x, want 0xf0 0x79 0x77 (first element in the high nibble)", q.Packed[0], q.Packed[1], q.Packed[2])
	}
	// -0.5/0.5 -> code 0; 0.25/0.5 = 0.5 -> code 12 (0.4407, below the
	// 0.5017 midpoint); 0.5/0.5 -> 15; the padding zero -> 7.
	if q.Packed[32] != 0x0C || q.Packed[33] != 0xF7 {
		t.Fatalf("tail bytes = %#x %#x, want 0x0c 0xf7", q.Packed[32], q.Packed[33])
	}
	got := q.Dequantize()
	for i, want := range map[int]float32{0: 2, 1: -2, 2: 0, 3: 2 * nf4Code[9], 64: -0.5, 66: 0.5} {
		if got[i] != want {
			t.Errorf("dequantized[%d] = %v, want %v", i, got[i], want)
		}
	}

	// An all-zero block: absmax 0, every code 0 (0 * Inf is NaN), decodes to zeros.
	z, err := QuantizeNF4(make([]float32, 64), []int64{8, 8}, false)
	if err != nil {
		t.Fatal(err)
	}
	if z.Absmax[0] != 0 || slices.ContainsFunc(z.Packed, func(b byte) bool { return b != 0 }) {
		t.Fatalf("zero block: absmax %v, packed %v", z.Absmax, z.Packed)
	}
	for _, v := range z.Dequantize() {
		if v != 0 {
			t.Fatalf("zero block decodes to %v", v)
		}
	}
}

func TestQuantizeNF4Errors(t *testing.T) {
	for _, c := range []struct {
		name  string
		w     []float32
		shape []int64
		want  error
	}{
		{"nan", []float32{1, float32(math.NaN())}, []int64{2}, ErrNonFinite},
		{"inf", []float32{float32(math.Inf(-1)), 1}, []int64{2}, ErrNonFinite},
		{"shape", []float32{1, 2, 3}, []int64{2, 2}, nil},
		{"empty", nil, []int64{0}, nil},
		{"no shape", []float32{1}, nil, nil},
	} {
		_, err := QuantizeNF4(c.w, c.shape, true)
		if err == nil {
			t.Errorf("%s: no error", c.name)
		} else if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestQuantizeNF4ParallelMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	w := make([]float32, 3*4096*NF4Block+77) // several chunks and a partial block
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	q, err := QuantizeNF4(w, []int64{int64(len(w))}, true)
	if err != nil {
		t.Fatal(err)
	}
	blocks := (len(w) + NF4Block - 1) / NF4Block
	packed, absmax := make([]byte, (len(w)+1)/2), make([]float32, blocks)
	if err := quantizeBlocks(w, packed, absmax, 0, blocks); err != nil {
		t.Fatal(err)
	}
	codes, scales, off := quantizeAbsmax(absmax)
	if !slices.Equal(packed, q.Packed) || !slices.Equal(codes, q.QAbsmax) || !slices.Equal(scales, q.Absmax2) || off != q.Offset {
		t.Fatal("parallel quantisation differs from the serial one")
	}
	// Double quantisation keeps the absmax close.
	dec := q.BlockAbsmax()
	for i, a := range absmax {
		if d := math.Abs(float64(dec[i] - a)); d > 0.02*float64(a)+1e-6 {
			t.Fatalf("block %d: absmax %v decodes to %v", i, a, dec[i])
		}
	}
}

func BenchmarkQuantizeNF4(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	w := make([]float32, 4096*4096)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	b.SetBytes(int64(4 * len(w)))
	for b.Loop() {
		if _, err := QuantizeNF4(w, []int64{4096, 4096}, true); err != nil {
			b.Fatal(err)
		}
	}
}

// torchBytes returns t's raw bytes, failing the test on error.
func torchFloats(t *testing.T, x *torch.Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNF4IndexFastMatchesTree checks the one-comparison lookup against
// bitsandbytes' decision tree: every float32 within 2^16 ulps of each
// threshold and of each bucket edge, random values, and the specials.
func TestNF4IndexFastMatchesTree(t *testing.T) {
	check := func(x float32) {
		if a, b := nf4IndexFast(x), nf4Index(x); a != b {
			t.Fatalf("x = %v (%#08x): lookup %d, tree %d", x, math.Float32bits(x), a, b)
		}
	}
	var centres []float32
	centres = append(centres, nf4Mids()...)
	for k := 0; k <= nf4Buckets; k++ {
		centres = append(centres, float32(k)/(nf4Buckets/2)-1)
	}
	for _, c := range centres {
		up, down := c, c
		for range 1 << 16 {
			check(up)
			check(down)
			up, down = math.Nextafter32(up, 3), math.Nextafter32(down, -3)
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 1 << 20 {
		check(float32(rng.Float64()*2.2 - 1.1))
		check(math.Float32frombits(rng.Uint32()))
	}
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 1, -1, math.MaxFloat32, -math.MaxFloat32, 1e-45} {
		check(float32(x))
	}
}
