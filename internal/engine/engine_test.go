package engine

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

func TestScheduleMatchesHuggingFace(t *testing.T) {
	cases := []struct {
		s    Schedule
		k    int
		want float64
	}{
		{Schedule{"constant", 1, 0, 10}, 0, 1},
		{Schedule{"constant", 1, 4, 10}, 0, 0},
		{Schedule{"constant", 1, 4, 10}, 2, 0.5},
		{Schedule{"constant", 1, 4, 10}, 9, 1},
		{Schedule{"linear", 2, 2, 10}, 1, 1},
		{Schedule{"linear", 2, 2, 10}, 2, 2},
		{Schedule{"linear", 2, 2, 10}, 6, 1},
		{Schedule{"linear", 2, 2, 10}, 10, 0},
		{Schedule{"cosine", 1, 0, 10}, 0, 1},
		{Schedule{"cosine", 1, 0, 10}, 5, 0.5},
		{Schedule{"cosine", 1, 2, 12}, 7, 0.5},
		{Schedule{"cosine", 1, 0, 10}, 10, 0},
	}
	for _, c := range cases {
		if got := c.s.At(c.k); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v.At(%d) = %v, want %v", c.s, c.k, got, c.want)
		}
	}
	if err := (Schedule{"exp", 1, 0, 1}).Validate(); err == nil {
		t.Error("unknown schedule accepted")
	}
}

func TestClipScale(t *testing.T) {
	if got := ClipScale(10, 1); math.Abs(got-1/(10+1e-6)) > 1e-15 {
		t.Fatalf("ClipScale(10, 1) = %v", got)
	}
	if ClipScale(0.5, 1) != 1 || ClipScale(100, 0) != 1 {
		t.Fatal("no clipping expected")
	}
	if n := Norm([]float32{3, 4}); n != 5 {
		t.Fatalf("Norm = %v", n)
	}
}

func tinyModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	o := tiny.Default()
	o.Vocab, o.Hidden, o.Intermediate = 101, 32, 64
	if err := tiny.Write(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

func settings(dropout float64) Settings {
	return Settings{
		DType: torch.Float32, Device: torch.CPU,
		LoRA:        lora.Config{R: 4, Alpha: 8, Dropout: dropout, TargetModules: []string{model.QProj, model.VProj, model.DownProj}},
		Schedule:    Schedule{Kind: "cosine", LR: 1e-2, Warmup: 2, Total: 8},
		AdamW:       torch.AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01},
		MaxGradNorm: 1, Seed: 5,
	}
}

// batches makes n deterministic batches of rows x seq tokens with the first
// two labels of every row masked, like a prompt.
func batches(n, rows, seq, vocab int) []Batch {
	rng := rand.New(rand.NewPCG(9, 9))
	var out []Batch
	for range n {
		b := Batch{B: rows, S: seq, IDs: make([]int64, rows*seq), Labels: make([]int64, rows*seq)}
		for i := range b.IDs {
			b.IDs[i] = int64(rng.IntN(vocab))
			b.Labels[i] = b.IDs[i]
			if i%seq < 2 {
				b.Labels[i] = model.IgnoreIndex
			}
		}
		out = append(out, b)
	}
	return out
}

func split(b Batch, parts int) []Batch {
	var out []Batch
	per := b.B / parts
	for p := range parts {
		lo, hi := p*per*b.S, (p+1)*per*b.S
		out = append(out, Batch{B: per, S: b.S, IDs: b.IDs[lo:hi], Labels: b.Labels[lo:hi]})
	}
	return out
}

// step runs micro-batches, then applies the summed gradient.
func step(t *testing.T, e *Engine, micro []Batch) (float64, StepStats) {
	t.Helper()
	var loss float64
	tokens := 0
	for _, b := range micro {
		r, err := e.MicroBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		loss += r.LossSum
		tokens += r.Tokens
	}
	g, err := e.Gradients()
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Apply(append([]float32(nil), g...), tokens)
	if err != nil {
		t.Fatal(err)
	}
	return loss / float64(tokens), st
}

func values(t *testing.T, e *Engine) []float32 {
	t.Helper()
	v, err := e.Adapter.Values()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestGradAccumulation: one micro-batch of 4 rows and four of 1 row take
// the same optimizer steps, within float32 summation-order noise.
func TestGradAccumulation(t *testing.T) {
	dir := tinyModel(t)
	whole, err := New(dir, settings(0))
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	parts, err := New(dir, settings(0))
	if err != nil {
		t.Fatal(err)
	}
	defer parts.Close()
	for i, b := range batches(3, 4, 12, 101) {
		l1, _ := step(t, whole, []Batch{b})
		l4, _ := step(t, parts, split(b, 4))
		if math.Abs(l1-l4) > 1e-5 {
			t.Fatalf("step %d: loss %v with one micro-batch, %v with four", i, l1, l4)
		}
		if d := maxDiff(values(t, whole), values(t, parts)); d > 1e-6 {
			t.Fatalf("step %d: adapters differ by %g", i, d)
		}
	}
	if d := maxDiff(values(t, whole), make([]float32, whole.Adapter.NumParams())); d == 0 {
		t.Fatal("the adapter never moved")
	}
}

// TestResume: stopping after 3 steps, checkpointing, and continuing in a
// new engine gives the same losses as not stopping, dropout included.
func TestResume(t *testing.T) {
	dir := tinyModel(t)
	data := batches(6, 2, 10, 101)
	run := func(e *Engine, bs []Batch) []float64 {
		var out []float64
		for _, b := range bs {
			l, _ := step(t, e, split(b, 2))
			out = append(out, l)
		}
		return out
	}
	straight, err := New(dir, settings(0.1))
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	want := run(straight, data)

	first, err := New(dir, settings(0.1))
	if err != nil {
		t.Fatal(err)
	}
	got := run(first, data[:3])
	ckpt := filepath.Join(t.TempDir(), "checkpoint-3")
	if err := first.Save(ckpt, dir, []byte(`{"position":3}`)); err != nil {
		t.Fatal(err)
	}
	first.Close()

	second, err := New(dir, settings(0.1))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	st, err := second.Restore(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	var data3 bytes.Buffer
	if err := json.Compact(&data3, st.Data); err != nil {
		t.Fatal(err)
	}
	if st.Step != 3 || data3.String() != `{"position":3}` || second.Step() != 3 {
		t.Fatalf("restored state %+v, engine step %d", st, second.Step())
	}
	got = append(got, run(second, data[3:])...)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("step %d: loss %v after resume, %v without stopping (all: %v vs %v)", i+1, got[i], want[i], got, want)
		}
	}
	if d := maxDiff(values(t, straight), values(t, second)); d > 1e-6 {
		t.Fatalf("final adapters differ by %g", d)
	}
}

// TestScorerLosses: a row's loss does not depend on the padding or the
// other rows of its batch, and matches the training loss.
func TestScorerLosses(t *testing.T) {
	dir := tinyModel(t)
	sc, err := NewScorer(dir, "", torch.Float32, torch.CPU, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rows := [][]int64{{4, 8, 15, 16, 23, 42}, {7, 7, 1}}
	// Right-pad row 1 to 6 with labels masked.
	b := Batch{B: 2, S: 6, IDs: make([]int64, 12), Labels: make([]int64, 12)}
	for r, row := range rows {
		for i := range 6 {
			if i < len(row) {
				b.IDs[r*6+i], b.Labels[r*6+i] = row[i], row[i]
			} else {
				b.Labels[r*6+i] = model.IgnoreIndex
			}
		}
	}
	got, err := sc.Losses(b)
	if err != nil {
		t.Fatal(err)
	}
	for r, row := range rows {
		alone, err := sc.Losses(Batch{B: 1, S: len(row), IDs: row, Labels: row})
		if err != nil {
			t.Fatal(err)
		}
		if got[r].Tokens != len(row)-1 || math.Abs(got[r].Sum-alone[0].Sum) > 1e-4 {
			t.Fatalf("row %d: batched %+v, alone %+v", r, got[r], alone[0])
		}
	}
	// The sum over rows is the training loss of the batch.
	e, err := New(dir, settings(0))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.MicroBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.LossSum-(got[0].Sum+got[1].Sum)) > 1e-4 || res.Tokens != got[0].Tokens+got[1].Tokens {
		t.Fatalf("training loss %+v, scorer rows %+v", res, got)
	}
}

// TestMemoryStaysFlat: after 50 warm-up steps, 450 more training steps
// grow the resident set by less than 5%: every intermediate tensor is freed
// and libtorch allocates from one thread's arena.
func TestMemoryStaysFlat(t *testing.T) {
	e, err := New(tinyModel(t), settings(0.05))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.Bench(4, 32, 50, 450)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS %d MiB after warm-up, %d MiB after %d steps: growth %.2f%%", res.RSSWarmBytes>>20, res.RSSEndBytes>>20, res.Steps, 100*res.RSSGrowth)
	if res.RSSWarmBytes == 0 || res.RSSGrowth > 0.05 {
		t.Fatalf("resident memory grew by %.1f%% over %d steps", 100*res.RSSGrowth, res.Steps)
	}
}

// TestQLoRATrains: with NF4 base weights the adapter still learns: the
// loss on a repeated batch falls.
func TestQLoRATrains(t *testing.T) {
	set := settings(0)
	set.NewLinear = lora.NF4Factory(true)
	set.Schedule = Schedule{Kind: "constant", LR: 2e-2, Total: 20}
	e, err := New(tinyModel(t), set)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, ok := e.Model.Layers[0].Proj[model.QProj].(*lora.NF4Linear); !ok {
		t.Fatalf("q_proj is %T, want *lora.NF4Linear", e.Model.Layers[0].Proj[model.QProj])
	}
	b := batches(1, 4, 16, 101)[0]
	first, _ := step(t, e, []Batch{b})
	var last float64
	for range 19 {
		last, _ = step(t, e, []Batch{b})
	}
	t.Logf("QLoRA loss %.4f -> %.4f", first, last)
	if !(last < first-0.1) {
		t.Fatalf("loss did not fall: %.4f -> %.4f", first, last)
	}
}

// TestAutocastBF16: with bf16 autocast (on the CPU here; CUDA in
// production) the loss stays close to float32's and the adapter learns.
func TestAutocastBF16(t *testing.T) {
	dir := tinyModel(t)
	b := batches(1, 2, 16, 101)[0]
	losses := map[bool]float64{}
	for _, ac := range []bool{false, true} {
		set := settings(0)
		if ac {
			set.Autocast = torch.BFloat16
		}
		e, err := New(dir, set)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.MicroBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		g, err := e.Gradients()
		if err != nil {
			t.Fatal(err)
		}
		if Norm(g) == 0 {
			t.Fatalf("autocast %v: zero gradient", ac)
		}
		losses[ac] = r.LossSum / float64(r.Tokens)
		e.Close()
	}
	t.Logf("loss float32 %.5f, bf16 autocast %.5f", losses[false], losses[true])
	if d := math.Abs(losses[true] - losses[false]); d > 0.02*losses[false] || d == 0 {
		t.Fatalf("bf16 autocast loss %v vs float32 %v: want close but not identical", losses[true], losses[false])
	}
}

// TestGradientCheckpointing: recomputing layers in the backward pass gives
// the gradients of the plain pass, and training with it takes the same
// steps.
func TestGradientCheckpointing(t *testing.T) {
	dir := tinyModel(t)
	plain, err := New(dir, settings(0))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	set := settings(0)
	set.Checkpointing = true
	ckpt, err := New(dir, set)
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	for i, b := range batches(3, 3, 12, 101) {
		l1, _ := step(t, plain, []Batch{b})
		l2, _ := step(t, ckpt, []Batch{b})
		if math.Abs(l1-l2) > 1e-6 {
			t.Fatalf("step %d: loss %v plain, %v checkpointed", i, l1, l2)
		}
		if d := maxDiff(values(t, plain), values(t, ckpt)); d > 1e-6 {
			t.Fatalf("step %d: adapters differ by %g", i, d)
		}
	}
	if d := maxDiff(values(t, ckpt), make([]float32, ckpt.Adapter.NumParams())); d == 0 {
		t.Fatal("the checkpointed adapter never moved")
	}
	// With dropout, the replay draws the masks of the first run: training works.
	set.LoRA.Dropout = 0.2
	drop, err := New(dir, set)
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	if _, err := drop.MicroBatch(batches(1, 2, 8, 101)[0]); err != nil {
		t.Fatal(err)
	}
}

// TestEvalLoss: the evaluation loss is the training forward's loss (with
// dropout off), and evaluating neither touches the accumulated gradient nor
// changes the steps that follow: a run evaluating after every step ends with
// the adapter of one that never does, bit for bit.
func TestEvalLoss(t *testing.T) {
	dir := tinyModel(t)
	bs := batches(4, 2, 12, 101)
	plain, err := New(dir, settings(0.1))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	evals, err := New(dir, settings(0.1))
	if err != nil {
		t.Fatal(err)
	}
	defer evals.Close()
	noDrop, err := New(dir, settings(0))
	if err != nil {
		t.Fatal(err)
	}
	defer noDrop.Close()
	ev, err := evals.EvalLoss(bs[3])
	if err != nil {
		t.Fatal(err)
	}
	tr, err := noDrop.MicroBatch(bs[3])
	if err != nil {
		t.Fatal(err)
	}
	if ev.Tokens != tr.Tokens || math.Abs(ev.LossSum-tr.LossSum) > 1e-4*math.Abs(tr.LossSum) {
		t.Fatalf("eval loss %v over %d tokens, training forward without dropout %v over %d", ev.LossSum, ev.Tokens, tr.LossSum, tr.Tokens)
	}
	for _, b := range bs[:3] {
		step(t, plain, []Batch{b})
		if _, err := evals.MicroBatch(b); err != nil {
			t.Fatal(err)
		}
		// Between the micro-batch and the step: the gradient must survive.
		if _, err := evals.EvalLoss(bs[3]); err != nil {
			t.Fatal(err)
		}
		g, err := evals.Gradients()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := evals.Apply(append([]float32(nil), g...), b.Tokens()); err != nil {
			t.Fatal(err)
		}
	}
	if d := maxDiff(values(t, plain), values(t, evals)); d != 0 {
		t.Fatalf("evaluating changed training: adapters differ by %g", d)
	}
}
