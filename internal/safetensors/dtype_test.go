package safetensors

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestDTypeSizes(t *testing.T) {
	cases := []struct {
		d          DType
		bits, size int
	}{
		{Bool, 8, 1}, {U8, 8, 1}, {I8, 8, 1}, {F8E5M2, 8, 1}, {F8E4M3, 8, 1}, {F8E8M0, 8, 1},
		{I16, 16, 2}, {U16, 16, 2}, {F16, 16, 2}, {BF16, 16, 2},
		{I32, 32, 4}, {U32, 32, 4}, {F32, 32, 4},
		{F64, 64, 8}, {I64, 64, 8}, {U64, 64, 8}, {C64, 64, 8},
		{F4, 4, 0}, {F6E2M3, 6, 0}, {"F12", 0, 0}, {"f32", 0, 0},
	}
	for _, c := range cases {
		if c.d.Bits() != c.bits || c.d.Size() != c.size || c.d.Valid() != (c.bits > 0) {
			t.Errorf("%q: bits %d size %d valid %v, want %d %d", c.d, c.d.Bits(), c.d.Size(), c.d.Valid(), c.bits, c.size)
		}
	}
	for _, c := range []struct {
		d     DType
		shape []int64
		want  int64
		ok    bool
	}{
		{F32, []int64{2, 3}, 24, true},
		{F32, []int64{}, 4, true},
		{BF16, []int64{5, 0, 7}, 0, true},
		{F4, []int64{4}, 2, true},
		{F6E3M2, []int64{4}, 3, true},
		{F4, []int64{3}, 0, false},
		{F32, []int64{-1}, 0, false},
		{F64, []int64{1 << 31, 1 << 31, 4}, 0, false},
	} {
		got, err := ByteLen(c.d, c.shape)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ByteLen(%s, %v) = %d, %v; want %d ok=%v", c.d, c.shape, got, err, c.want, c.ok)
		}
	}
}

func TestFloat32ToBF16(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x80000000, 0x8000}, // -0
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above tie
		{0x3f807fff, 0x3f80}, // below tie
		{0x7f7fffff, 0x7f80}, // max float rounds to +inf
		{0x7f800000, 0x7f80}, // +inf
		{0xff800000, 0xff80}, // -inf
		{0x00000001, 0x0000}, // tiny subnormal
		{0x7f800001, 0x7fc0}, // signalling NaN with low payload stays NaN
		{0xffc00000, 0xffc0}, // -NaN keeps its sign
	}
	for _, c := range cases {
		if got := Float32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestFloat32ToF16(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.99, 0x7bff},
		{65520, 0x7c00}, // tie above max rounds to even: infinity
		{float32(math.Inf(-1)), 0xfc00},
		{0x1p-14, 0x0400},        // smallest normal
		{0x1p-24, 0x0001},        // smallest subnormal
		{0x1p-25, 0x0000},        // tie to even zero
		{0x1.8p-25, 0x0001},      // above the tie
		{0x1.8p-24, 0x0002},      // 1.5 ulp ties to even 2
		{0x1.4p-24, 0x0001},      // 1.25 ulp
		{1023 * 0x1p-24, 0x03ff}, // largest subnormal
		{0x1.ffcp-15, 0x0400},    // rounds up into the normals
		{1 + 0x1p-11, 0x3c00},    // tie, even
		{1 + 3*0x1p-11, 0x3c02},  // tie, odd rounds up
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if h := Float32ToF16(math.Float32frombits(0x7f800001)); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN became %#04x", h)
	}
}

// Every 16-bit pattern widens to float32 and rounds back to itself.
func TestHalfRoundTripExhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToFloat32(h)
		isNaN := h&0x7c00 == 0x7c00 && h&0x3ff != 0
		if isNaN != math.IsNaN(float64(f)) {
			t.Fatalf("F16 %#04x widened to %g", h, f)
		}
		if back := Float32ToF16(f); !isNaN && back != h || isNaN && back != h|0x200 {
			t.Fatalf("F16 %#04x -> %g -> %#04x", h, f, back)
		}
		b := BF16ToFloat32(h)
		bNaN := h&0x7f80 == 0x7f80 && h&0x7f != 0
		if back := Float32ToBF16(b); !bNaN && back != h || bNaN && back != h|0x40 {
			t.Fatalf("BF16 %#04x -> %g -> %#04x", h, b, back)
		}
	}
	// Subnormal halves widen to their exact value.
	for m := 1; m < 1024; m++ {
		if got, want := F16ToFloat32(uint16(m)), float32(m)*0x1p-24; got != want {
			t.Fatalf("F16 subnormal %#04x = %g, want %g", m, got, want)
		}
	}
}

// Rounding is to the nearest representable value, ties to even: checked
// against the neighbours of the result for random float32 bit patterns.
func TestRoundingIsNearestEven(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// overflow is the smallest magnitude that rounds to infinity: the
	// largest finite value plus half an ulp.
	check := func(name string, x float32, h uint16, widen func(uint16) float32, overflow float64) {
		if math.IsNaN(float64(x)) {
			return
		}
		got := float64(widen(h))
		if math.IsInf(got, 0) {
			if math.Abs(float64(x)) < overflow || math.Signbit(got) != math.Signbit(float64(x)) {
				t.Fatalf("%s(%g) overflowed to %g", name, x, got)
			}
			return
		}
		if math.Abs(float64(x)) >= overflow {
			t.Fatalf("%s(%g) = %g, want infinity", name, x, got)
		}
		dist := math.Abs(got - float64(x))
		for _, nb := range []uint16{h - 1, h + 1} {
			v := float64(widen(nb))
			if math.IsNaN(v) || math.IsInf(v, 0) || (math.Signbit(v) != math.Signbit(got) && got != 0) {
				continue
			}
			d := math.Abs(v - float64(x))
			if d < dist || d == dist && nb&1 == 0 && h&1 == 1 {
				t.Fatalf("%s(%g = %#08x) = %#04x (%g), but %#04x (%g) is nearer or the even tie",
					name, x, math.Float32bits(x), h, got, nb, v)
			}
		}
	}
	for i := 0; i < 200000; i++ {
		bits := r.Uint32()
		if i%2 == 0 { // concentrate on the half-precision range
			bits = bits&0x807fffff | uint32(100+r.IntN(45))<<23
		}
		x := math.Float32frombits(bits)
		check("Float32ToF16", x, Float32ToF16(x), F16ToFloat32, 65520)
		check("Float32ToBF16", x, Float32ToBF16(x), BF16ToFloat32, float64(math.Float32frombits(0x7f7f8000)))
	}
}

func TestConvert(t *testing.T) {
	src := []float32{1, -2.5, 0.1, 65504, 3.3e38}
	raw, _ := FromFloat32(F32, src)
	bf, err := Convert(BF16, F32, raw)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Convert(F16, BF16, bf)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ToFloat32(F16, h)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(src))
	for i, v := range src {
		want[i] = F16ToFloat32(Float32ToF16(BF16ToFloat32(Float32ToBF16(v))))
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("F32->BF16->F16 = %v, want %v", back, want)
	}
	f64 := []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f} // 1.0
	if v, err := ToFloat32(F64, f64); err != nil || v[0] != 1 {
		t.Errorf("ToFloat32(F64) = %v, %v", v, err)
	}
	for _, bad := range []struct{ dst, src DType }{{I32, F32}, {F32, I8}, {BF16, F64}} {
		if _, err := Convert(bad.dst, bad.src, make([]byte, 8)); err == nil {
			t.Errorf("Convert(%s, %s) succeeded", bad.dst, bad.src)
		}
	}
	if _, err := ToFloat32(F32, make([]byte, 6)); err == nil {
		t.Error("ToFloat32 of 6 bytes of F32 succeeded")
	}
}
