package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/internal/torch"
)

func benchLinear(b *testing.B, q *NF4Weights) *NF4Linear {
	l, err := NewNF4Linear(q, nil, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Free)
	return l
}

// BenchmarkNF4Dequantize decodes a 4096x4096 weight to float32 on the CPU.
func BenchmarkNF4Dequantize(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	q, err := QuantizeNF4(randWeights(rng, 4096*4096), []int64{4096, 4096}, true)
	if err != nil {
		b.Fatal(err)
	}
	l := benchLinear(b, q)
	for _, generic := range []bool{false, true} {
		b.Run(map[bool]string{false: "cpu-loop", true: "aten-ops"}[generic], func(b *testing.B) {
			if err := torch.SetNF4Generic(generic); err != nil {
				b.Fatal(err)
			}
			defer torch.SetNF4Generic(false)
			b.SetBytes(4096 * 4096 * 4)
			for b.Loop() {
				s := torch.NewScope()
				l.Dequantize(s, torch.Float32)
				if s.Err() != nil {
					b.Fatal(s.Err())
				}
				s.Close()
			}
		})
	}
}
