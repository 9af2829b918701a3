package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
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

// BenchmarkNF4TrainStep times a forward and backward pass with LoRA on
// every projection of a small model, dense base against NF4 base.
func BenchmarkNF4TrainStep(b *testing.B) {
	dir := b.TempDir()
	if err := tiny.Write(dir, tiny.Options{Layers: 2, Hidden: 512, Heads: 8, KVHeads: 4, Intermediate: 1376, Vocab: 256}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    model.LinearFactory
	}{{"dense", nil}, {"nf4", NF4Factory(false)}, {"nf4-dq", NF4Factory(true)}} {
		b.Run(c.name, func(b *testing.B) {
			m, err := model.Load(dir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU, NewLinear: c.f})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Free()
			ad, err := New(m, Config{R: 8, Alpha: 16, TargetModules: model.Projections}, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer ad.Free()
			ids := make([]int64, 4*64)
			for i := range ids {
				ids[i] = int64(i % 256)
			}
			for b.Loop() {
				s := torch.NewScope()
				loss := model.CausalLMLoss(s, m.Forward(s, model.Batch{IDs: s.FromInt64(ids, 4, 64)}, model.Options{Adapter: ad}), s.FromInt64(ids, 4, 64))
				if s.Err() != nil {
					b.Fatal(s.Err())
				}
				if err := loss.Backward(); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
