package lora_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

// oraclePython is Debian's interpreter, where python3-torch installs; the
// python3 first on PATH may be another one without torch.
const oraclePython = "/usr/bin/python3"

// oracleTol is the largest absolute difference accepted against PyTorch in
// float32: both sides run the same libtorch kernels, so differences come
// only from the order of floating-point operations.
const oracleTol = 1e-4

// TestAgainstPyTorchOracle compares logits, the causal-LM loss and every
// LoRA gradient with tests/oracle/llama/llama_ref.py, an independent
// PyTorch implementation of Hugging Face's Llama/Qwen2 and PEFT's LoRA.
func TestAgainstPyTorchOracle(t *testing.T) {
	if _, err := os.Stat(oraclePython); err != nil {
		t.Fatalf("the oracle needs Debian's python3-torch (apt-get install python3-torch): %v", err)
	}
	base := tiny.Options{Layers: 2, Hidden: 32, Heads: 4, KVHeads: 2, Intermediate: 48, Vocab: 97, MaxPositions: 128, NormNoise: 0.2}
	cases := []struct {
		name string
		opt  func(o *tiny.Options)
		cfg  lora.Config
	}{
		{"llama-gqa-tied", func(o *tiny.Options) { o.Arch, o.Tie = "llama", true },
			lora.Config{R: 4, Alpha: 8, TargetModules: model.Projections}},
		{"qwen2-bias-untied", func(o *tiny.Options) { o.Arch, o.Tie = "qwen2", false },
			lora.Config{R: 4, Alpha: 16, TargetModules: []string{model.QProj, model.VProj, model.DownProj}}},
		{"llama3-rope-attnbias-rslora", func(o *tiny.Options) { o.Arch, o.Llama3Rope, o.AttnBias, o.KVHeads = "llama", true, true, 1 },
			lora.Config{R: 8, Alpha: 16, RSLoRA: true, TargetModules: model.Projections}},
		{"mistral-mha", func(o *tiny.Options) { o.Arch, o.KVHeads = "mistral", 4 },
			lora.Config{R: 2, Alpha: 4, TargetModules: []string{model.KProj, model.OProj, model.GateProj, model.UpProj}}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := base
			o.Seed = uint64(10 + i)
			c.opt(&o)
			modelDir := filepath.Join(dir, "model")
			if err := tiny.Write(modelDir, o); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(modelDir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			ad, err := lora.New(m, c.cfg, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer ad.Free()
			// PEFT starts B at zero, which zeroes every A gradient: give both
			// random values so that every gradient is exercised.
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			vals := make([]float32, ad.NumParams())
			for j := range vals {
				vals[j] = float32(rng.NormFloat64() * 0.1)
			}
			if err := ad.SetValues(vals); err != nil {
				t.Fatal(err)
			}
			const B, S = 2, 9
			ids := make([]int64, B*S)
			for j := range ids {
				ids[j] = int64(rng.IntN(o.Vocab))
			}
			labels := append([]int64(nil), ids...)
			labels[0], labels[1], labels[2*S-1] = model.IgnoreIndex, model.IgnoreIndex, model.IgnoreIndex

			s := torch.NewScope()
			defer s.Close()
			logits := m.Forward(s, model.Batch{IDs: s.FromInt64(ids, B, S)}, model.Options{Adapter: ad})
			loss := model.CausalLMLoss(s, logits, s.FromInt64(labels, B, S))
			if s.Err() != nil {
				t.Fatal(s.Err())
			}
			if err := loss.Backward(); err != nil {
				t.Fatal(err)
			}
			grads := make([]float32, ad.NumParams())
			if err := ad.Grads(grads); err != nil {
				t.Fatal(err)
			}
			gotLogits := s.Float32s(logits)
			gotLoss := s.Item(loss)
			if s.Err() != nil {
				t.Fatal(s.Err())
			}

			adapterDir := filepath.Join(dir, "adapter")
			if err := ad.Save(adapterDir, modelDir); err != nil {
				t.Fatal(err)
			}
			ref := runOracle(t, dir, modelDir, adapterDir, ids, labels, B, S)
			check := func(what string, got []float32, want []float32) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d values, oracle has %d", what, len(got), len(want))
				}
				worst := 0.0
				for j := range got {
					d := math.Abs(float64(got[j]) - float64(want[j]))
					if math.IsNaN(d) {
						d = math.Inf(1)
					}
					worst = max(worst, d)
				}
				t.Logf("%-40s max |herd - pytorch| = %.3g over %d values", what, worst, len(got))
				if worst > oracleTol {
					t.Errorf("%s: max abs difference %.3g > %g", what, worst, oracleTol)
				}
			}
			check("logits", gotLogits, ref["logits"])
			check("loss_sum", []float32{float32(gotLoss)}, ref["loss_sum"])
			off := 0
			nonzero := 0
			for _, p := range ad.Pairs() {
				for _, mat := range []struct {
					name string
					t    *torch.Tensor
				}{{"A", p.A}, {"B", p.B}} {
					n := 1
					for _, d := range mat.t.Shape() {
						n *= int(d)
					}
					key := lora.PEFTKey(p.Key, mat.name)
					check("grad "+key, grads[off:off+n], ref["grad:"+key])
					for _, g := range grads[off : off+n] {
						if g != 0 {
							nonzero++
						}
					}
					off += n
				}
			}
			if nonzero < len(grads)/2 {
				t.Fatalf("only %d of %d gradients are non-zero: the test would not see a wrong gradient", nonzero, len(grads))
			}
		})
	}
}

func runOracle(t *testing.T, dir, modelDir, adapterDir string, ids, labels []int64, B, S int64) map[string][]float32 {
	t.Helper()
	in := filepath.Join(dir, "inputs.safetensors")
	enc := func(v []int64) []byte {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			u := uint64(x)
			for k := 0; k < 8; k++ {
				b[8*i+k] = byte(u >> (8 * k))
			}
		}
		return b
	}
	if err := safetensors.Write(in, []safetensors.NamedTensor{
		{Name: "ids", DType: safetensors.I64, Shape: []int64{B, S}, Data: enc(ids)},
		{Name: "labels", DType: safetensors.I64, Shape: []int64{B, S}, Data: enc(labels)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "oracle.safetensors")
	cmd := exec.Command(oraclePython, "../tests/oracle/llama/llama_ref.py", modelDir, adapterDir, in, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oracle: %v\n%s", err, msg)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := map[string][]float32{}
	for _, name := range f.Names() {
		info, raw, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := safetensors.ToFloat32(info.DType, raw)
		if err != nil {
			t.Fatal(fmt.Errorf("%s: %w", name, err))
		}
		res[name] = v
	}
	return res
}
