package lora_test

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

// TestMerge: the merged model without adapter computes what the base model
// with the adapter computes.
func TestMerge(t *testing.T) {
	dir := t.TempDir()
	baseDir, adDir, outDir := filepath.Join(dir, "base"), filepath.Join(dir, "ad"), filepath.Join(dir, "merged")
	o := tiny.Default()
	o.Vocab, o.Tie, o.NormNoise = 71, false, 0.1
	if err := tiny.Write(baseDir, o); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(baseDir, "tokenizer_config.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := model.Load(baseDir, model.LoadOptions{DType: torch.Float32})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Free()
	ad, err := lora.New(base, lora.Config{R: 4, Alpha: 8, TargetModules: []string{model.QProj, model.OProj, model.UpProj}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Free()
	rng := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, ad.NumParams())
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.2)
	}
	if err := ad.SetValues(v); err != nil {
		t.Fatal(err)
	}
	if err := ad.Save(adDir, baseDir); err != nil {
		t.Fatal(err)
	}
	if err := lora.Merge(baseDir, adDir, outDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outDir, "tokenizer_config.json")); err != nil {
		t.Fatalf("tokenizer files not copied: %v", err)
	}
	merged, err := model.Load(outDir, model.LoadOptions{DType: torch.Float32})
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Free()
	s := torch.NewScope()
	defer s.Close()
	ids := s.FromInt64([]int64{1, 5, 9, 33, 70, 2}, 1, 6)
	want := s.Float32s(base.Forward(s, model.Batch{IDs: ids}, model.Options{Adapter: ad}))
	got := s.Float32s(merged.Forward(s, model.Batch{IDs: ids}, model.Options{}))
	plain := s.Float32s(base.Forward(s, model.Batch{IDs: ids}, model.Options{}))
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	worst, moved := 0.0, 0.0
	for i := range want {
		worst = max(worst, math.Abs(float64(got[i]-want[i])))
		moved = max(moved, math.Abs(float64(plain[i]-want[i])))
	}
	t.Logf("merged vs base+adapter: max |diff| %.3g (adapter moves logits by up to %.3g)", worst, moved)
	if worst > 1e-5 || moved < 1e-3 {
		t.Fatalf("merged model differs by %g from base+adapter (adapter effect %g)", worst, moved)
	}
	// An adapter for another model is refused.
	other := filepath.Join(dir, "other")
	o2 := o
	o2.Hidden = 32
	if err := tiny.Write(other, o2); err != nil {
		t.Fatal(err)
	}
	if err := lora.Merge(other, adDir, filepath.Join(dir, "bad")); err == nil {
		t.Fatal("merging an adapter into a model of another shape succeeded")
	}
}
