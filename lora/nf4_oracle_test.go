package lora_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

const nf4Oracle = "../tests/oracle/nf4/nf4_ref.py"

// nf4Cases are the weights compared with the oracle: random ones and
// adversarial ones.
func nf4Cases() []struct {
	name  string
	shape []int64
	w     []float32
} {
	rng := rand.New(rand.NewPCG(21, 22))
	normal := func(n int, std float64) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * std)
		}
		return w
	}
	code := lora.NF4Code()
	// The thresholds bitsandbytes' dQuantizeNF4 tree compares with.
	mids := []float32{-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
		-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
		0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
		0.5016634166240692, 0.6427869200706482, 0.8614784181118011}
	var cases []struct {
		name  string
		shape []int64
		w     []float32
	}
	add := func(name string, w []float32, shape ...int64) {
		if len(shape) == 0 {
			shape = []int64{int64(len(w))}
		}
		cases = append(cases, struct {
			name  string
			shape []int64
			w     []float32
		}{name, shape, w})
	}
	add("random", normal(96*80, 0.02), 96, 80)
	add("random_odd", normal(33*37, 1), 33, 37)            // 1221: partial block, odd tail
	add("random_large", normal(4097*193, 0.05), 4097, 193) // several parallel chunks, odd length
	// Exact code values, scaled by powers of two so that w * (1/absmax)
	// is exact; both signs of the absmax.
	var exact []float32
	for k, scale := range []float32{1, 0.25, 8, -1} {
		for i := 0; i < 64; i++ {
			exact = append(exact, code[(i+k)%16]*scale)
		}
	}
	add("exact_codes", exact, 4, 64)
	// Exact midpoints (absmax 1 in every block), and one ulp either side.
	var onMid []float32
	for _, scale := range []float32{1, 0.5} {
		block := []float32{scale}
		for _, m := range mids {
			block = append(block, m*scale, math.Nextafter32(m, 2)*scale, math.Nextafter32(m, -2)*scale)
		}
		block = append(block, make([]float32, 64-len(block))...)
		onMid = append(onMid, block...)
	}
	add("midpoints", onMid, 2, 64)
	// An all-zero block between non-zero ones.
	z := normal(3*64, 0.1)
	clear(z[64:128])
	add("zero_block", z, 3, 64)
	add("all_zero", make([]float32, 130))
	// One huge outlier crushes the rest of its block to zero codes.
	o := normal(2*64, 0.01)
	o[70] = 3e4
	o[5] = -1e30
	add("outlier", o, 2, 64)
	// A subnormal absmax: 1/absmax overflows to +Inf.
	sub := make([]float32, 64)
	sub[0], sub[1], sub[2] = 1e-40, -1e-40, 5e-41
	add("subnormal", sub)
	// Sizes around the block size.
	for _, n := range []int{1, 2, 63, 65, 127, 129} {
		add(fmt.Sprintf("size_%d", n), normal(n, 1))
	}
	// Every block with the same absmax: double quantisation sees all zeros.
	same := normal(5*64, 0.1)
	for b := 0; b < 5; b++ {
		same[b*64] = 0.5
	}
	add("same_absmax", same, 5, 64)
	// Double quantisation on exact midpoints of the dynamic code book: block
	// absmax 1 ± m pair up to a mean of exactly 1 and 2 and 0 make the
	// absmax scale 1, so absmax - offset is ±m exactly; m are the dynamic
	// midpoints for which 1 ± m are float32 numbers (+m and -m fall between
	// code pairs of opposite parity: both tie directions).
	dyn := lora.DynamicMap()
	absmaxes := []float32{2, 0}
	for k := 128; k < 254; k++ {
		m := (dyn[k] + dyn[k+1]) * 0.5
		hi, lo := 1+float64(m), 1-float64(m)
		if m <= 0.5 && float64(float32(hi)) == hi && float64(float32(lo)) == lo {
			absmaxes = append(absmaxes, float32(hi), float32(lo))
		}
	}
	dqMid := make([]float32, 64*len(absmaxes))
	for b, a := range absmaxes {
		dqMid[b*64+b%64] = a
	}
	add("dq_midpoints", dqMid, int64(len(absmaxes)), 64)
	// More than one double-quantisation block, the last one partial.
	add("dq_blocks", normal(600*64+5, 0.03))
	return cases
}

// TestNF4AgainstOracle compares herd's quantisation (Go) and
// dequantisation (Go and libtorch) with tests/oracle/nf4/nf4_ref.py, an
// independent torch restatement of bitsandbytes: packed codes, absmax and
// the double-quantisation state must be bit-identical, dequantised values
// equal.
func TestNF4AgainstOracle(t *testing.T) {
	if _, err := os.Stat(oraclePython); err != nil {
		t.Fatalf("the oracle needs Debian's python3-torch (apt-get install python3-torch): %v", err)
	}
	dir := t.TempDir()
	cases := nf4Cases()
	var in []safetensors.NamedTensor
	for _, c := range cases {
		raw, err := safetensors.FromFloat32(safetensors.F32, c.w)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, safetensors.NamedTensor{Name: c.name, DType: safetensors.F32, Shape: c.shape, Data: raw})
	}
	inPath, outPath := filepath.Join(dir, "weights.safetensors"), filepath.Join(dir, "ref.safetensors")
	if err := safetensors.Write(inPath, in, nil); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(oraclePython, nf4Oracle, "quant", inPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("oracle: %v\n%s", err, msg)
	}
	ref, err := safetensors.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	u8 := func(name string) []byte {
		t.Helper()
		info, raw, err := ref.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != safetensors.U8 {
			t.Fatalf("%s: dtype %s", name, info.DType)
		}
		return raw
	}
	f32 := func(name string) []float32 {
		t.Helper()
		info, raw, err := ref.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := safetensors.ToFloat32(info.DType, raw)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dm := lora.DynamicMap()
	if got := f32("dynamic_map"); !bitsEqual(got, dm[:]) {
		t.Fatalf("the oracle's dynamic map (create_dynamic_map on this torch) differs from herd's table:\n%v\n%v", got, dm)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, dq := range []bool{false, true} {
				q, err := lora.QuantizeNF4(c.w, c.shape, dq)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(q.Packed, u8(c.name+"/packed")) {
					t.Fatalf("dq=%v: packed codes differ from the oracle's: %s", dq, firstDiff(q.Packed, u8(c.name+"/packed")))
				}
				prefix := c.name + "/"
				if dq {
					prefix += "dq_"
					if !slices.Equal(q.QAbsmax, u8(prefix+"qabsmax")) {
						t.Fatalf("quantised absmax differ: %s", firstDiff(q.QAbsmax, u8(prefix+"qabsmax")))
					}
					if !bitsEqual(q.Absmax2, f32(prefix+"absmax2")) {
						t.Fatalf("absmax scales differ: %v vs %v", q.Absmax2, f32(prefix+"absmax2"))
					}
					if off := f32(prefix + "offset"); math.Float32bits(off[0]) != math.Float32bits(q.Offset) {
						t.Fatalf("offset %v, oracle %v", q.Offset, off[0])
					}
				} else if !bitsEqual(q.Absmax, f32(prefix+"absmax")) {
					t.Fatalf("absmax differ: %v vs %v", q.Absmax, f32(prefix+"absmax"))
				}
				want := f32(prefix + "dequant")
				checkClose(t, fmt.Sprintf("dq=%v Go dequantisation", dq), q.Dequantize(), want)

				// libtorch's dequantisation, through the layer the model
				// uses, with the CPU loop and with the ATen ops of GPUs.
				if len(c.shape) != 2 {
					continue
				}
				l, err := lora.NewNF4Linear(q, nil, torch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				for _, generic := range []bool{false, true} {
					if err := torch.SetNF4Generic(generic); err != nil {
						t.Fatal(err)
					}
					s := torch.NewScope()
					got := s.Float32s(l.Dequantize(s, torch.Float32))
					err = s.Err()
					s.Close()
					if err != nil {
						t.Fatal(err)
					}
					checkClose(t, fmt.Sprintf("dq=%v libtorch dequantisation (generic=%v)", dq, generic), got, want)
				}
				_ = torch.SetNF4Generic(false)
				l.Free()
			}
		})
	}
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d bytes vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("byte %d: %#02x vs %#02x", i, a[i], b[i])
		}
	}
	return "equal"
}

// checkClose requires |got - want| <= 1e-6 (relative above 1) everywhere,
// and logs how many values are bit-identical.
func checkClose(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, oracle %d", what, len(got), len(want))
	}
	same := 0
	for i := range got {
		if got[i] == want[i] {
			same++
			continue
		}
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= 1e-6*max(1, math.Abs(float64(want[i])))) {
			t.Fatalf("%s: element %d: %v, oracle %v", what, i, got[i], want[i])
		}
	}
	if same != len(got) {
		t.Logf("%s: %d of %d values bit-identical, the rest within 1e-6", what, same, len(got))
	}
}

// nf4Step runs one forward and backward pass and returns the logits, the
// summed loss and the flat LoRA gradients.
func nf4Step(t *testing.T, m *model.Model, ad *lora.Adapter, ids, labels []int64, B, S int64) ([]float32, float64, []float32) {
	t.Helper()
	if err := ad.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
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
	lv, l := s.Float32s(logits), s.Item(loss)
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	return lv, l, grads
}

func maxAbsDiff(a, b []float32) float64 {
	worst := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst
}

// TestNF4ModelAgainstOracle trains one step of a tiny Llama on NF4 base
// weights and checks it against the same step on dense base weights equal
// to the oracle's NF4 round trip of the model (nf4_ref.py model): run by
// herd's engine and by the PyTorch Llama reference (tests/oracle/llama):
// logits and LoRA gradients within 1e-5 of both. The logits differ
// from the unquantised model's, as quantisation must show.
func TestNF4ModelAgainstOracle(t *testing.T) {
	if _, err := os.Stat(oraclePython); err != nil {
		t.Fatalf("the oracle needs Debian's python3-torch (apt-get install python3-torch): %v", err)
	}
	// Hidden 40 and head size 10 make k/v ([20, 40]) and the MLP ([52, 40])
	// end in partial blocks.
	o := tiny.Options{Layers: 2, Hidden: 40, Heads: 4, KVHeads: 2, Intermediate: 52, Vocab: 97, MaxPositions: 128, NormNoise: 0.2, Seed: 31}
	cfg := lora.Config{R: 4, Alpha: 8, TargetModules: model.Projections}
	for _, dq := range []bool{false, true} {
		t.Run(fmt.Sprintf("double_quant=%v", dq), func(t *testing.T) {
			dir := t.TempDir()
			modelDir, rtDir := filepath.Join(dir, "model"), filepath.Join(dir, "roundtrip")
			if err := tiny.Write(modelDir, o); err != nil {
				t.Fatal(err)
			}
			flag := "0"
			if dq {
				flag = "1"
			}
			if msg, err := exec.Command(oraclePython, nf4Oracle, "model", modelDir, rtDir, flag).CombinedOutput(); err != nil {
				t.Fatalf("oracle: %v\n%s", err, msg)
			}
			rng := rand.New(rand.NewPCG(41, 42))
			const B, S = 2, 9
			ids := make([]int64, B*S)
			for j := range ids {
				ids[j] = int64(rng.IntN(o.Vocab))
			}
			labels := append([]int64(nil), ids...)
			labels[0], labels[S] = model.IgnoreIndex, model.IgnoreIndex
			var vals []float32

			run := func(dir string, opt model.LoadOptions) (*model.Model, *lora.Adapter, []float32, float64, []float32) {
				m, err := model.Load(dir, opt)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Free)
				ad, err := lora.New(m, cfg, 7)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(ad.Free)
				if vals == nil { // B starts at zero in PEFT: give every matrix values
					vals = make([]float32, ad.NumParams())
					for j := range vals {
						vals[j] = float32(rng.NormFloat64() * 0.1)
					}
				}
				if err := ad.SetValues(vals); err != nil {
					t.Fatal(err)
				}
				logits, loss, grads := nf4Step(t, m, ad, ids, labels, B, S)
				return m, ad, logits, loss, grads
			}
			m, ad, logits, loss, grads := run(modelDir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU, NewLinear: lora.NF4Factory(dq)})
			if mem := lora.MeasureProjections(m); mem.NF4 != 2*len(model.Projections) || mem.Dense != 0 {
				t.Fatalf("%d NF4 and %d dense projections", mem.NF4, mem.Dense)
			}
			nonzero := 0
			for _, g := range grads {
				if g != 0 {
					nonzero++
				}
			}
			if nonzero < len(grads)/2 {
				t.Fatalf("only %d of %d LoRA gradients are non-zero through the NF4 base", nonzero, len(grads))
			}

			_, _, dLogits, dLoss, dGrads := run(rtDir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU})
			for _, c := range []struct {
				what      string
				got, want []float32
			}{{"logits", logits, dLogits}, {"loss", []float32{float32(loss)}, []float32{float32(dLoss)}}, {"LoRA gradients", grads, dGrads}} {
				d := maxAbsDiff(c.got, c.want)
				t.Logf("NF4 vs dense oracle-dequantised base, herd engine: %-15s max |diff| = %.3g", c.what, d)
				if d > 1e-5 {
					t.Errorf("%s: NF4 base and its dequantised dense base differ by %.3g > 1e-5", c.what, d)
				}
			}

			adapterDir := filepath.Join(dir, "adapter")
			if err := ad.Save(adapterDir, rtDir); err != nil {
				t.Fatal(err)
			}
			ref := runOracle(t, dir, rtDir, adapterDir, ids, labels, B, S)
			var refGrads []float32
			for _, p := range ad.Pairs() {
				refGrads = append(refGrads, ref["grad:"+lora.PEFTKey(p.Key, "A")]...)
				refGrads = append(refGrads, ref["grad:"+lora.PEFTKey(p.Key, "B")]...)
			}
			for _, c := range []struct {
				what      string
				got, want []float32
			}{{"logits", logits, ref["logits"]}, {"LoRA gradients", grads, refGrads}} {
				if len(c.got) != len(c.want) {
					t.Fatalf("%s: %d values, PyTorch %d", c.what, len(c.got), len(c.want))
				}
				d := maxAbsDiff(c.got, c.want)
				t.Logf("NF4 base vs PyTorch on the oracle-dequantised base: %-15s max |diff| = %.3g", c.what, d)
				if d > 1e-5 {
					t.Errorf("%s: %.3g > 1e-5", c.what, d)
				}
			}

			_, _, fLogits, fLoss, _ := run(modelDir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU})
			d := maxAbsDiff(logits, fLogits)
			t.Logf("NF4 vs unquantised base: logits max |diff| = %.3g, loss %.6f vs %.6f", d, loss, fLoss)
			if d < 1e-5 {
				t.Errorf("NF4 logits equal the unquantised ones (max diff %.3g): quantisation did not happen", d)
			}
		})
	}
}

// TestNF4MemoryTinyModel loads a tiny model with NF4 projections and
// measures what they hold: at most 0.6 byte per parameter.
func TestNF4MemoryTinyModel(t *testing.T) {
	dir := t.TempDir()
	if err := tiny.Write(dir, tiny.Options{Layers: 2, Hidden: 256, Heads: 4, KVHeads: 2, Intermediate: 512, Vocab: 128}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		dt   torch.DType
		f    model.LinearFactory
		max  float64
	}{
		{"dense float32", torch.Float32, nil, 4},
		{"dense bfloat16", torch.BFloat16, nil, 2},
		{"nf4", torch.BFloat16, lora.NF4Factory(false), 0.6},
		{"nf4+double-quant", torch.BFloat16, lora.NF4Factory(true), 0.6},
	} {
		m, err := model.Load(dir, model.LoadOptions{DType: c.dt, Device: torch.CPU, NewLinear: c.f})
		if err != nil {
			t.Fatal(err)
		}
		mem := lora.MeasureProjections(m)
		m.Free()
		t.Logf("%-17s %d projections, %d params, %d bytes: %.4f bytes/param", c.name, mem.NF4+mem.Dense, mem.Params, mem.WeightBytes, mem.BytesPerParam())
		if mem.BytesPerParam() > c.max {
			t.Errorf("%s: %.4f bytes/param > %g", c.name, mem.BytesPerParam(), c.max)
		}
		if (c.f != nil) != (mem.NF4 == 14 && mem.Dense == 0) {
			t.Errorf("%s: %d NF4 and %d dense projections", c.name, mem.NF4, mem.Dense)
		}
	}
}
