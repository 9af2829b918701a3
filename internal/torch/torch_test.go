package torch

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	lib "github.com/sugarme/gotch/libtch"
)

func TestMain(m *testing.M) {
	// A test binary of this package that cannot load libtorch is a broken
	// build, not a reason to skip.
	if err := Load(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func mustF32(t *testing.T, data []float32, shape ...int64) *Tensor {
	t.Helper()
	x, err := FromFloat32(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Free)
	return x
}

func values(t *testing.T, x *Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol || math.IsNaN(float64(got[i])) {
			t.Errorf("%s[%d] = %v, want %v (|diff| %.3g > %.3g)", what, i, got[i], want[i], d, tol)
		}
	}
}

func TestMatmulFromGoData(t *testing.T) {
	a := mustF32(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := mustF32(t, []float32{7, 8, 9, 10, 11, 12}, 3, 2)
	c, err := Matmul(a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	if got := c.Shape(); !slices.Equal(got, []int64{2, 2}) {
		t.Fatalf("shape %v, want [2 2]", got)
	}
	if c.DType() != Float32 || c.Device() != CPU {
		t.Fatalf("got %v on %v, want float32 on cpu", c.DType(), c.Device())
	}
	closeTo(t, "a@b", values(t, c), []float64{58, 64, 139, 154}, 0)
}

func TestShapeMismatchIsAnError(t *testing.T) {
	if _, err := FromFloat32([]float32{1, 2, 3}, 2, 2); err == nil {
		t.Fatal("3 values for shape [2 2] accepted")
	}
	a := mustF32(t, []float32{1, 2, 3, 4}, 2, 2)
	b := mustF32(t, []float32{1, 2, 3}, 3, 1)
	_, err := Matmul(a, b)
	if err == nil || !strings.Contains(err.Error(), "libtorch:") {
		t.Fatalf("matmul of [2 2] and [3 1]: err = %v, want a libtorch error", err)
	}
}

// TestBackwardAndAdamW trains y = sum((x @ w) * c) for two steps and checks
// the gradient (x^T c) and both AdamW updates against the formulas of
// torch.optim.AdamW evaluated here in float64.
func TestBackwardAndAdamW(t *testing.T) {
	x := []float64{1, -2, 0.5, 3} // 2x2
	c := []float64{0.25, -1, 2, 0.5}
	w0 := []float64{0.1, -0.2, 0.3, -0.4}
	xt := mustF32(t, f32(x), 2, 2)
	ct := mustF32(t, f32(c), 2, 2)
	w := mustF32(t, f32(w0), 2, 2)
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	opt, err := NewAdamW([]*Tensor{w}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	// The loss is linear in w, so the gradient is the same every step.
	grad := []float64{
		x[0]*c[0] + x[2]*c[2], x[0]*c[1] + x[2]*c[3],
		x[1]*c[0] + x[3]*c[2], x[1]*c[1] + x[3]*c[3],
	}
	ref := slices.Clone(w0)
	m, v := make([]float64, 4), make([]float64, 4)
	lrs := []float64{0.05, 0.02}
	for step, lr := range lrs {
		s := NewScope()
		loss := s.Sum(s.Mul(s.Matmul(xt, w), ct))
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		g := s.Own(must(w.Grad()))
		closeTo(t, fmt.Sprintf("step %d grad", step+1), values(t, g), grad, 1e-6)
		if err := opt.Step([]*Tensor{g}, lr); err != nil {
			t.Fatal(err)
		}
		// Zero the accumulated gradient, as optimizer.zero_grad() would.
		s.op(func(out *lib.Ctensor) { lib.AtgZero_(out, g.c) })
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		s.Close()

		n := float64(step + 1)
		for i := range ref {
			ref[i] *= 1 - lr*cfg.WeightDecay
			m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*grad[i]
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*grad[i]*grad[i]
			mhat := m[i] / (1 - math.Pow(cfg.Beta1, n))
			denom := math.Sqrt(v[i])/math.Sqrt(1-math.Pow(cfg.Beta2, n)) + cfg.Eps
			ref[i] -= lr * mhat / denom
		}
		closeTo(t, fmt.Sprintf("step %d weights", step+1), values(t, w), ref, 1e-6)
	}
	if opt.Steps() != 2 {
		t.Fatalf("optimizer counted %d steps, want 2", opt.Steps())
	}
}

// TestStubbedOp checks an op the preparation may have stubbed: where it was,
// calling it must give the documented error; where not, it must work.
func TestStubbedOp(t *testing.T) {
	x := mustF32(t, []float32{1, 2, 3}, 1, 3)
	got, err := wrap(func(out *lib.Ctensor) { lib.AtgSqueezeDims(out, x.c, []int64{0}, 1) })
	if slices.Contains(Build().StubbedOps, "squeeze_dims") {
		want := "op squeeze_dims is not available in libtorch " + Build().Version
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("stubbed squeeze_dims: err = %v, want %q", err, want)
		}
		return
	}
	if err != nil {
		t.Fatalf("squeeze_dims is not stubbed but fails: %v", err)
	}
	defer got.Free()
	if s := got.Shape(); !slices.Equal(s, []int64{3}) {
		t.Fatalf("squeeze_dims([1 3], 0) shape %v, want [3]", s)
	}
}

func TestThreads(t *testing.T) {
	before, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	defer SetNumThreads(before)
	if err := SetNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if n, _ := NumThreads(); n != 1 {
		t.Fatalf("after SetNumThreads(1): %d threads", n)
	}
	if err := SetNumThreads(0); err == nil {
		t.Fatal("SetNumThreads(0) accepted")
	}
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func must(x *Tensor, err error) *Tensor {
	if err != nil {
		panic(err)
	}
	return x
}

// TestScopeStopsAtFirstError checks that ops after a failure do nothing and
// the first error is the one reported.
func TestScopeStopsAtFirstError(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := s.FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	b := s.FromFloat32([]float32{1, 2, 3}, 3, 1)
	bad := s.Matmul(a, b)
	if bad != nil || s.Err() == nil {
		t.Fatalf("matmul [2 2]x[3 1] gave %v, err %v", bad, s.Err())
	}
	first := s.Err()
	if s.Add(a, a) != nil || s.Err() != first {
		t.Fatalf("an op ran after the scope failed (err %v)", s.Err())
	}
}

func TestScopeOps(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := s.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	cases := []struct {
		name string
		got  *Tensor
		want []float64
	}{
		{"transpose", s.Contiguous(s.Transpose(x, 0, 1)), []float64{1, 4, 2, 5, 3, 6}},
		{"narrow", s.Contiguous(s.Narrow(x, 1, 1, 2)), []float64{2, 3, 5, 6}},
		{"cat", s.Cat(0, x, x), []float64{1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}},
		{"mean", s.MeanDim(x, true, -1), []float64{2, 5}},
		{"addscalar", s.AddScalar(x, 0.5), []float64{1.5, 2.5, 3.5, 4.5, 5.5, 6.5}},
		{"pow", s.PowScalar(x, 2), []float64{1, 4, 9, 16, 25, 36}},
		{"linear", s.Linear(x, s.FromFloat32([]float32{1, 0, -1}, 1, 3), s.FromFloat32([]float32{10}, 1)), []float64{8, 8}},
		{"softmax", s.Softmax(s.FromFloat32([]float32{0, 0}, 2), 0, Float32), []float64{0.5, 0.5}},
		{"embedding", s.Embedding(x, s.FromInt64([]int64{1, 0}, 2)), []float64{4, 5, 6, 1, 2, 3}},
		{"triu", s.Triu(s.Full([]int64{2, 2}, 1, Float32, CPU), 1), []float64{0, 1, 0, 0}},
		{"arange", s.Arange(0, 3, Float32, CPU), []float64{0, 1, 2}},
		{"silu", s.Silu(s.FromFloat32([]float32{0}, 1)), []float64{0}},
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	for _, c := range cases {
		closeTo(t, c.name, values(t, c.got), c.want, 1e-6)
	}
	// cross entropy of uniform logits over 4 classes is log 4; -100 is ignored.
	logits := s.Zeros([]int64{3, 4}, Float32, CPU)
	loss := s.Item(s.CrossEntropy(logits, s.FromInt64([]int64{1, -100, 3}, 3), ReduceMean, -100))
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	if math.Abs(loss-math.Log(4)) > 1e-6 {
		t.Fatalf("cross entropy %v, want log 4", loss)
	}
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]string{"cpu": "cpu", "cuda": "cuda:0", "cuda:3": "cuda:3"} {
		d, err := ParseDevice(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDevice(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"gpu", "cuda:-1", "cuda:x", ""} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) accepted", bad)
		}
	}
	var zero Device
	if zero != CPU {
		t.Fatal("the zero Device is not the CPU")
	}
}

func TestThreadRunsOnOneOSThread(t *testing.T) {
	th := NewThread()
	defer th.Close()
	var first, other int
	th.Do(func() { first = gettid() })
	for range 50 {
		go func() {}()
		th.Do(func() { other = gettid() })
		if other != first {
			t.Fatalf("work ran on thread %d, then %d", first, other)
		}
	}
	x := 0
	th.Do(func() { x = 42 })
	if x != 42 {
		t.Fatal("Do returned before the work ran")
	}
}
