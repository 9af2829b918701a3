package torch

import (
	lib "github.com/sugarme/gotch/libtch"
)

// Scope is where model code runs ops. Every tensor an op returns belongs to
// the scope and is freed by Close, so one scope per step keeps memory flat
// without finalizers. The first error stops the scope: later ops return nil
// without calling libtorch, and Err reports it, so a forward pass reads as
// straight-line code with one check at the end (like bufio.Scanner).
type Scope struct {
	owned []*Tensor
	err   error
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

// Err is the first error any op in the scope met.
func (s *Scope) Err() error { return s.err }

// Fail records err as the scope's error when it has none yet.
func (s *Scope) Fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// Close frees every tensor the scope still owns.
func (s *Scope) Close() {
	for _, t := range s.owned {
		t.Free()
	}
	s.owned = s.owned[:0]
}

// Own hands t to the scope, which frees it on Close.
func (s *Scope) Own(t *Tensor) *Tensor {
	if t != nil {
		s.owned = append(s.owned, t)
	}
	return t
}

// Release takes t out of the scope: the caller now owns it and must Free it.
func (s *Scope) Release(t *Tensor) *Tensor {
	for i := len(s.owned) - 1; i >= 0; i-- {
		if s.owned[i] == t {
			s.owned = append(s.owned[:i], s.owned[i+1:]...)
			break
		}
	}
	return t
}

// op runs one libtch call that yields a tensor, unless the scope failed.
func (s *Scope) op(f func(out *lib.Ctensor)) *Tensor {
	if s.err != nil {
		return nil
	}
	t, err := wrap(f)
	if err != nil {
		s.err = err
		return nil
	}
	return s.Own(t)
}

// ok reports whether the scope can run ops on ts: no error so far, and no
// nil input (which only an earlier failure produces).
func (s *Scope) ok(ts ...*Tensor) bool {
	if s.err != nil {
		return false
	}
	for _, t := range ts {
		if t == nil || t.c == nil {
			s.err = &Error{Msg: "op on a nil or freed tensor"}
			return false
		}
	}
	return true
}

// withScalar passes a temporary libtorch Scalar to f and frees it after.
func withScalar(v float64, f func(c lib.Cscalar)) {
	c := lib.AtsFloat(v)
	defer lib.AtsFree(c)
	f(c)
}

// --- creation ---

// FromFloat32 copies data into a CPU float32 tensor owned by the scope.
func (s *Scope) FromFloat32(data []float32, shape ...int64) *Tensor {
	if s.err != nil {
		return nil
	}
	t, err := FromFloat32(data, shape...)
	s.Fail(err)
	return s.Own(t)
}

// FromInt64 copies data into a CPU int64 tensor owned by the scope.
func (s *Scope) FromInt64(data []int64, shape ...int64) *Tensor {
	if s.err != nil {
		return nil
	}
	t, err := FromInt64(data, shape...)
	s.Fail(err)
	return s.Own(t)
}

// Zeros is torch.zeros(shape, dtype, device).
func (s *Scope) Zeros(shape []int64, dt DType, dev Device) *Tensor {
	return s.op(func(out *lib.Ctensor) { lib.AtgZeros(out, shape, len(shape), int32(dt), dev.gotch()) })
}

// Full is torch.full(shape, v, dtype, device).
func (s *Scope) Full(shape []int64, v float64, dt DType, dev Device) *Tensor {
	return s.op(func(out *lib.Ctensor) {
		withScalar(v, func(c lib.Cscalar) { lib.AtgFull(out, shape, len(shape), c, int32(dt), dev.gotch()) })
	})
}

// Arange is torch.arange(start, end) as dtype on dev.
func (s *Scope) Arange(start, end float64, dt DType, dev Device) *Tensor {
	return s.op(func(out *lib.Ctensor) {
		withScalar(start, func(a lib.Cscalar) {
			withScalar(end, func(b lib.Cscalar) { lib.AtgArangeStart(out, a, b, int32(dt), dev.gotch()) })
		})
	})
}

// --- shape ---

// View is x.view(shape); one dimension may be -1.
func (s *Scope) View(x *Tensor, shape ...int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgView(out, x.c, shape, len(shape)) })
}

// Reshape is x.reshape(shape).
func (s *Scope) Reshape(x *Tensor, shape ...int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgReshape(out, x.c, shape, len(shape)) })
}

// Transpose swaps two dimensions.
func (s *Scope) Transpose(x *Tensor, d0, d1 int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgTranspose(out, x.c, d0, d1) })
}

// Contiguous returns x laid out contiguously (x itself when it already is).
func (s *Scope) Contiguous(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgContiguous(out, x.c) })
}

// Narrow is x.narrow(dim, start, length), a view.
func (s *Scope) Narrow(x *Tensor, dim, start, length int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgNarrow(out, x.c, dim, start, length) })
}

// Cat concatenates along dim.
func (s *Scope) Cat(dim int64, xs ...*Tensor) *Tensor {
	if !s.ok(xs...) {
		return nil
	}
	cs := make([]lib.Ctensor, len(xs))
	for i, x := range xs {
		cs[i] = x.c
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgCat(out, cs, len(cs), dim) })
}

// Expand broadcasts x to shape without copying.
func (s *Scope) Expand(x *Tensor, shape ...int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgExpand(out, x.c, shape, len(shape), 0) })
}

// Unsqueeze inserts a dimension of size 1.
func (s *Scope) Unsqueeze(x *Tensor, dim int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgUnsqueeze(out, x.c, dim) })
}

// Flatten flattens dimensions start..end.
func (s *Scope) Flatten(x *Tensor, start, end int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgFlatten(out, x.c, start, end) })
}

// --- arithmetic ---

// Add is a + b with broadcasting.
func (s *Scope) Add(a, b *Tensor) *Tensor {
	if !s.ok(a, b) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgAdd(out, a.c, b.c) })
}

// Sub is a - b with broadcasting.
func (s *Scope) Sub(a, b *Tensor) *Tensor {
	if !s.ok(a, b) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSub(out, a.c, b.c) })
}

// Mul is a * b with broadcasting.
func (s *Scope) Mul(a, b *Tensor) *Tensor {
	if !s.ok(a, b) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgMul(out, a.c, b.c) })
}

// Div is a / b with broadcasting.
func (s *Scope) Div(a, b *Tensor) *Tensor {
	if !s.ok(a, b) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgDiv(out, a.c, b.c) })
}

// AddScalar is x + v.
func (s *Scope) AddScalar(x *Tensor, v float64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { withScalar(v, func(c lib.Cscalar) { lib.AtgAddScalar(out, x.c, c) }) })
}

// MulScalar is x * v.
func (s *Scope) MulScalar(x *Tensor, v float64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { withScalar(v, func(c lib.Cscalar) { lib.AtgMulScalar(out, x.c, c) }) })
}

// PowScalar is x ** v.
func (s *Scope) PowScalar(x *Tensor, v float64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { withScalar(v, func(c lib.Cscalar) { lib.AtgPowTensorScalar(out, x.c, c) }) })
}

// Neg is -x.
func (s *Scope) Neg(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgNeg(out, x.c) })
}

// Rsqrt is 1/sqrt(x).
func (s *Scope) Rsqrt(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgRsqrt(out, x.c) })
}

// Cos is cos(x).
func (s *Scope) Cos(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgCos(out, x.c) })
}

// Sin is sin(x).
func (s *Scope) Sin(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSin(out, x.c) })
}

// Silu is x * sigmoid(x).
func (s *Scope) Silu(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSilu(out, x.c) })
}

// Matmul is torch.matmul(a, b).
func (s *Scope) Matmul(a, b *Tensor) *Tensor {
	if !s.ok(a, b) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgMatmul(out, a.c, b.c) })
}

// Linear is x @ w^T (+ bias when bias is not nil).
func (s *Scope) Linear(x, w, bias *Tensor) *Tensor {
	if !s.ok(x, w) {
		return nil
	}
	var cb lib.Ctensor
	if bias != nil {
		cb = bias.c
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgLinear(out, x.c, w.c, cb) })
}

// Embedding gathers rows of weight at integer ids.
func (s *Scope) Embedding(weight, ids *Tensor) *Tensor {
	if !s.ok(weight, ids) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgEmbedding(out, weight.c, ids.c, -1, 0, 0) })
}

// FromBool copies data into a CPU bool tensor owned by the scope.
func (s *Scope) FromBool(data []bool, shape ...int64) *Tensor {
	if s.err != nil {
		return nil
	}
	raw := make([]byte, len(data))
	for i, b := range data {
		if b {
			raw[i] = 1
		}
	}
	t, err := FromBytes(raw, Bool, shape...)
	s.Fail(err)
	return s.Own(t)
}

// WhereScalar is torch.where(cond, x, v): x where cond holds, v elsewhere.
func (s *Scope) WhereScalar(cond, x *Tensor, v float64) *Tensor {
	if !s.ok(cond, x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) {
		withScalar(v, func(c lib.Cscalar) { lib.AtgWhereScalarother(out, cond.c, x.c, c) })
	})
}

// Select is x.select(dim, index): the slice at index, one dimension fewer.
func (s *Scope) Select(x *Tensor, dim, index int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSelect(out, x.c, dim, index) })
}

// --- reductions and normalisation ---

// MeanDim is x.mean(dims, keepdim) in x's dtype.
func (s *Scope) MeanDim(x *Tensor, keepdim bool, dims ...int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgMeanDim(out, x.c, dims, len(dims), b32(keepdim), int32(x.DType())) })
}

// Sum reduces x to a scalar.
func (s *Scope) Sum(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSum(out, x.c, int32(x.DType())) })
}

// Softmax along dim, computed in dtype dt.
func (s *Scope) Softmax(x *Tensor, dim int64, dt DType) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgSoftmax(out, x.c, dim, int32(dt)) })
}

// LogSoftmax along dim, computed in dtype dt.
func (s *Scope) LogSoftmax(x *Tensor, dim int64, dt DType) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgLogSoftmax(out, x.c, dim, int32(dt)) })
}

// CrossEntropy is F.cross_entropy(logits [N, C], targets [N]) with
// ignore_index; reduction "none" (0), "mean" (1) or "sum" (2).
func (s *Scope) CrossEntropy(logits, targets *Tensor, reduction int64, ignoreIndex int64) *Tensor {
	if !s.ok(logits, targets) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) {
		lib.AtgCrossEntropyLoss(out, logits.c, targets.c, nil, reduction, ignoreIndex, 0)
	})
}

// Reductions for CrossEntropy.
const (
	ReduceNone int64 = 0
	ReduceMean int64 = 1
	ReduceSum  int64 = 2
)

// Dropout zeroes elements with probability p and rescales the rest, when
// train is true; it is the identity otherwise.
func (s *Scope) Dropout(x *Tensor, p float64, train bool) *Tensor {
	if !s.ok(x) {
		return nil
	}
	if p == 0 || !train {
		return x
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgDropout(out, x.c, p, 1) })
}

// Triu keeps the upper triangle above diagonal.
func (s *Scope) Triu(x *Tensor, diagonal int64) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgTriu(out, x.c, diagonal) })
}

// To converts x to dtype dt (same device); x itself when already dt.
func (s *Scope) To(x *Tensor, dt DType) *Tensor {
	if !s.ok(x) {
		return nil
	}
	if x.DType() == dt {
		return x
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgToDtype(out, x.c, int32(dt), 0, 0) })
}

// ToDevice moves x to dev, keeping its dtype.
func (s *Scope) ToDevice(x *Tensor, dev Device) *Tensor {
	if !s.ok(x) {
		return nil
	}
	if x.Device() == dev {
		return x
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgToDevice(out, x.c, dev.gotch(), int32(x.DType()), 0, 0) })
}

// Detach returns x cut from the autograd graph.
func (s *Scope) Detach(x *Tensor) *Tensor {
	if !s.ok(x) {
		return nil
	}
	return s.op(func(out *lib.Ctensor) { lib.AtgDetach(out, x.c) })
}

// Float32s copies x's values to Go.
func (s *Scope) Float32s(x *Tensor) []float32 {
	if !s.ok(x) {
		return nil
	}
	v, err := x.Float32s()
	s.Fail(err)
	return v
}

// Item returns a one-element tensor's value.
func (s *Scope) Item(x *Tensor) float64 {
	v := s.Float32s(x)
	if s.err != nil {
		return 0
	}
	if len(v) != 1 {
		s.Fail(&Error{Msg: "item of a tensor with more than one element"})
		return 0
	}
	return float64(v[0])
}

func b32(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
