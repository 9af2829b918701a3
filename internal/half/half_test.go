package half

import (
	"math"
	"testing"
)

// Every 16-bit pattern survives a round trip through float32 (NaNs stay
// NaNs with the quiet bit set).
func TestRoundTripsAreExact(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		for _, c := range []struct {
			name   string
			widen  func(uint16) float32
			narrow func(float32) uint16
			isNaN  bool
		}{
			{"bf16", BF16ToF32, FromF32ToBF16, h&0x7fff > 0x7f80},
			{"f16", F16ToF32, FromF32ToF16, h&0x7fff > 0x7c00},
		} {
			got := c.narrow(c.widen(h))
			if c.isNaN {
				if !math.IsNaN(float64(c.widen(got))) {
					t.Fatalf("%s %#04x: NaN became %#04x", c.name, h, got)
				}
				continue
			}
			if got != h {
				t.Fatalf("%s %#04x: round trip gives %#04x", c.name, h, got)
			}
		}
	}
}

func TestRoundingTiesToEven(t *testing.T) {
	cases := []struct {
		f          float32
		bf16, fp16 uint16
	}{
		{1, 0x3f80, 0x3c00},
		{float32(math.Float32frombits(0x3f808000)), 0x3f80, 0x3c04}, // bf16 tie: down to even
		{float32(math.Float32frombits(0x3f818000)), 0x3f82, 0x3c0c}, // bf16 tie: up to even
		{65520, 0x4780, 0x7c00}, // bf16 rounds up to 65536; f16 overflows to Inf
		{float32(math.Inf(-1)), 0xff80, 0xfc00},
		{float32(math.Ldexp(1, -25)), 0x3300, 0x0000}, // f16: ties to even zero
		{float32(math.Ldexp(1, -24)), 0x3380, 0x0001}, // smallest f16 subnormal
	}
	for _, c := range cases {
		if got := FromF32ToBF16(c.f); got != c.bf16 {
			t.Errorf("bf16(%v) = %#04x, want %#04x", c.f, got, c.bf16)
		}
		if got := FromF32ToF16(c.f); got != c.fp16 {
			t.Errorf("f16(%v) = %#04x, want %#04x", c.f, got, c.fp16)
		}
	}
}

// The table agrees with the exact widening for every code.
func TestF16Table(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		want, got := f16ToF32Slow(uint16(i)), F16Table()[i]
		if math.Float32bits(want) != math.Float32bits(got) {
			t.Fatalf("table[%#04x] = %#08x, want %#08x", i, math.Float32bits(got), math.Float32bits(want))
		}
	}
}
