package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/herdml/herd/internal/torch"
)

func randWeights(rng *rand.Rand, n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	return w
}

func TestNF4CodeBookAgrees(t *testing.T) {
	c, err := torch.NF4Code()
	if err != nil {
		t.Fatal(err)
	}
	if c != nf4Code {
		t.Fatalf("libherdtorch decodes with %v, Go quantises with %v", c, nf4Code)
	}
}

// withGeneric runs f with the CPU loop and with the ATen ops GPUs use.
func withGeneric(t *testing.T, f func(t *testing.T)) {
	for _, generic := range []bool{false, true} {
		t.Run(fmt.Sprintf("generic=%v", generic), func(t *testing.T) {
			if err := torch.SetNF4Generic(generic); err != nil {
				t.Fatal(err)
			}
			defer torch.SetNF4Generic(false)
			f(t)
		})
	}
}

// TestNF4DequantizeTorchMatchesGo checks that libtorch decodes exactly what
// the Go reference decodes, with and without double quantisation, for
// sizes that are and are not a multiple of the block, in float32 and in
// the 16-bit compute dtypes (the float32 product rounded once), through
// both decoders.
func TestNF4DequantizeTorchMatchesGo(t *testing.T) {
	withGeneric(t, testNF4DequantizeTorchMatchesGo)
}

func testNF4DequantizeTorchMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, shape := range [][]int64{{64, 64}, {3, 50}, {1, 1}, {7, 73}, {300, 301}, {1000, 3 * 64 * 64}} {
		for _, dq := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v-dq=%v", shape, dq), func(t *testing.T) {
				w := randWeights(rng, int(shape[0]*shape[1]))
				q, err := QuantizeNF4(w, shape, dq)
				if err != nil {
					t.Fatal(err)
				}
				l, err := NewNF4Linear(q, nil, torch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Free()
				want := q.Dequantize()
				s := torch.NewScope()
				defer s.Close()
				for _, dt := range []torch.DType{torch.Float32, torch.BFloat16, torch.Float16} {
					got := l.Dequantize(s, dt)
					ref := s.To(s.FromFloat32(want, shape...), dt)
					if s.Err() != nil {
						t.Fatal(s.Err())
					}
					if got.DType() != dt || fmt.Sprint(got.Shape()) != fmt.Sprint(shape) {
						t.Fatalf("got %v %v, want %v %v", got.DType(), got.Shape(), dt, shape)
					}
					g, r := torchFloats(t, got), torchFloats(t, ref)
					for i := range g {
						if g[i] != r[i] {
							t.Fatalf("%v: element %d: libtorch %v, Go %v", dt, i, g[i], r[i])
						}
					}
				}
			})
		}
	}
}

// TestNF4LinearMatchesDense checks NF4Linear against a dense linear layer
// on the dequantised weight: same output, same gradient for the input and
// the bias, and no gradient anywhere near the quantised weight.
func TestNF4LinearMatchesDense(t *testing.T) { withGeneric(t, testNF4LinearMatchesDense) }

func testNF4LinearMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const out, in = 48, 80
	for _, dq := range []bool{false, true} {
		for _, dt := range []torch.DType{torch.Float32, torch.BFloat16} {
			t.Run(fmt.Sprintf("dq=%v-%v", dq, dt), func(t *testing.T) {
				q, err := QuantizeNF4(randWeights(rng, out*in), []int64{out, in}, dq)
				if err != nil {
					t.Fatal(err)
				}
				biasv := randWeights(rng, out)
				mk := func() *torch.Tensor {
					b, err := torch.FromFloat32(biasv, out)
					if err != nil {
						t.Fatal(err)
					}
					bb, err := b.To(torch.CPU, dt)
					b.Free()
					if err != nil {
						t.Fatal(err)
					}
					if err := bb.SetRequiresGrad(true); err != nil {
						t.Fatal(err)
					}
					return bb
				}
				l, err := NewNF4Linear(q, mk(), torch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Free()
				denseBias := mk()
				defer denseBias.Free()

				xv := randWeights(rng, 2*3*in)
				run := func(f func(s *torch.Scope, x *torch.Tensor) *torch.Tensor) (y, gx []float32) {
					s := torch.NewScope()
					defer s.Close()
					x32 := s.FromFloat32(xv, 2, 3, in)
					if s.Err() != nil {
						t.Fatal(s.Err())
					}
					x := s.Own(mustTo(t, x32, dt))
					if err := x.SetRequiresGrad(true); err != nil {
						t.Fatal(err)
					}
					yt := f(s, x)
					// A loss that weights each output differently.
					wts := s.To(s.Arange(0, float64(2*3*out), torch.Float32, torch.CPU), dt)
					loss := s.Sum(s.Mul(s.To(yt, torch.Float32), s.To(s.View(wts, 2, 3, out), torch.Float32)))
					if s.Err() != nil {
						t.Fatal(s.Err())
					}
					if err := loss.Backward(); err != nil {
						t.Fatal(err)
					}
					g, err := x.Grad()
					if err != nil {
						t.Fatal(err)
					}
					s.Own(g)
					return torchFloats(t, yt), torchFloats(t, g)
				}
				y1, g1 := run(func(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return l.Forward(s, x) })
				y2, g2 := run(func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
					return s.Linear(x, s.Detach(l.Dequantize(s, dt)), denseBias)
				})
				tol := 1e-6
				if dt != torch.Float32 {
					tol = 0 // same kernels on the same bf16 values
				}
				compare(t, "output", y1, y2, tol)
				compare(t, "input gradient", g1, g2, tol)
				gb1, err := l.bias.Grad()
				if err != nil {
					t.Fatal(err)
				}
				defer gb1.Free()
				gb2, err := denseBias.Grad()
				if err != nil {
					t.Fatal(err)
				}
				defer gb2.Free()
				compare(t, "bias gradient", torchFloats(t, gb1), torchFloats(t, gb2), 1e-3)
				nz := 0
				for _, g := range g1 {
					if g != 0 {
						nz++
					}
				}
				if nz < len(g1)/2 {
					t.Fatalf("only %d of %d input gradients are non-zero", nz, len(g1))
				}
			})
		}
	}
}

func mustTo(t *testing.T, x *torch.Tensor, dt torch.DType) *torch.Tensor {
	t.Helper()
	y, err := x.To(torch.CPU, dt)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func compare(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = max(worst, d)
	}
	if worst > tol {
		t.Errorf("%s: max abs difference %.3g > %g", what, worst, tol)
	}
}

func TestNF4LinearErrors(t *testing.T) {
	q, err := QuantizeNF4(make([]float32, 64), []int64{8, 8}, false)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewNF4Linear(q, nil, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	if y := l.Forward(s, s.Zeros([]int64{2, 7}, torch.Float32, torch.CPU)); y != nil || s.Err() == nil {
		t.Fatal("a 7-feature input to an 8-feature weight did not fail")
	}
	t.Log(s.Err())
	l.Free()
	s2 := torch.NewScope()
	defer s2.Close()
	if y := l.Forward(s2, s2.Zeros([]int64{2, 8}, torch.Float32, torch.CPU)); y != nil || s2.Err() == nil {
		t.Fatal("a freed weight did not fail")
	}
	if _, err := NewNF4Linear(&NF4Weights{Shape: []int64{64}}, nil, torch.CPU); err == nil {
		t.Fatal("a 1-D weight made a linear layer")
	}
}

// TestNF4LinearAutocast runs NF4Linear under bf16 autocast (training.autocast):
// the weight is decoded to the float32 input's dtype and autocast lowers
// the matmul, exactly as for a dense float32 weight.
func TestNF4LinearAutocast(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(15, 16))
	const out, in = 40, 72
	q, err := QuantizeNF4(randWeights(rng, out*in), []int64{out, in}, true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewNF4Linear(q, nil, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	xv := randWeights(rng, 4*in)
	run := func(f func(s *torch.Scope, x *torch.Tensor) *torch.Tensor) (y, gx []float32, dt torch.DType) {
		s := torch.NewScope()
		defer s.Close()
		x := s.FromFloat32(xv, 4, in)
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		if err := x.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		stop, err := torch.Autocast(torch.CPU, torch.BFloat16)
		if err != nil {
			t.Fatal(err)
		}
		yt := f(s, x)
		stop()
		loss := s.Sum(s.Mul(s.To(yt, torch.Float32), s.To(yt, torch.Float32)))
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		g, err := x.Grad()
		if err != nil {
			t.Fatal(err)
		}
		s.Own(g)
		return torchFloats(t, yt), torchFloats(t, g), yt.DType()
	}
	y1, g1, dt1 := run(func(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return l.Forward(s, x) })
	y2, g2, dt2 := run(func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return s.Linear(x, l.Dequantize(s, torch.Float32), nil)
	})
	if dt1 != torch.BFloat16 || dt2 != torch.BFloat16 {
		t.Fatalf("autocast outputs are %v and %v, want bfloat16", dt1, dt2)
	}
	compare(t, "output", y1, y2, 0)
	compare(t, "input gradient", g1, g2, 1e-6)
}

// TestNF4LinearNoGrad runs the layer with autograd off (scoring, generation).
func TestNF4LinearNoGrad(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(17, 18))
	q, err := QuantizeNF4(randWeights(rng, 24*64), []int64{24, 64}, false)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewNF4Linear(q, nil, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(randWeights(rng, 3*64), 3, 64)
	want := s.Float32s(s.Linear(x, l.Dequantize(s, torch.Float32), nil))
	restore := torch.NoGrad()
	got := s.Float32s(l.Forward(s, x))
	restore()
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	compare(t, "no-grad output", got, want, 0)
}
