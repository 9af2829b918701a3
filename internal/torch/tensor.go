package torch

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
)

// DType is a libtorch scalar type (c10::ScalarType numbering).
type DType int32

// The scalar types herd uses.
const (
	Uint8    DType = 0
	Int32    DType = 3
	Int64    DType = 4
	Float16  DType = 5
	Float32  DType = 6
	Float64  DType = 7
	Bool     DType = 11
	BFloat16 DType = 15
)

func (d DType) String() string {
	switch d {
	case Uint8:
		return "uint8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Float16:
		return "float16"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Bool:
		return "bool"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Device is CPU or a CUDA device. The zero value is the CPU, so that a
// forgotten field never lands on a GPU.
type Device int32

// CPU is the host.
const CPU Device = 0

// CUDA returns device cuda:n.
func CUDA(n int) Device { return Device(n + 1) }

// gotch numbers devices -1 for the CPU and n for cuda:n.
func (d Device) gotch() int32 { return int32(d) - 1 }

func (d Device) String() string {
	if d <= CPU {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.gotch())
}

// ParseDevice reads "cpu" or "cuda:N" ("cuda" is cuda:0).
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(s[len("cuda:"):])
		if err == nil && n >= 0 {
			return CUDA(n), nil
		}
	}
	return CPU, fmt.Errorf("device %q: want cpu or cuda:N", s)
}

// Tensor is a handle to a libtorch tensor. It owns one reference, released
// by Free; a Tensor is never freed by the garbage collector, so loops stay
// flat in memory only if every handle is freed (see Scope).
type Tensor struct {
	c lib.Ctensor
}

// Free releases the handle. Freeing nil or twice is a no-op.
func (t *Tensor) Free() {
	if t == nil || t.c == nil {
		return
	}
	lib.AtFree(t.c)
	t.c = nil
}

// wrap makes a Tensor of a fresh C handle, or returns the call's error.
func wrap(f func(out *lib.Ctensor)) (*Tensor, error) {
	var out lib.Ctensor
	if err := call(func() { f(&out) }); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, &Error{Msg: "no tensor returned"}
	}
	return &Tensor{c: out}, nil
}

// FromFloat32 copies data into a new CPU float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int64) (*Tensor, error) {
	return fromSlice(unsafe.Pointer(unsafe.SliceData(data)), len(data), 4, Float32, shape)
}

// FromInt64 copies data into a new CPU int64 tensor of the given shape.
func FromInt64(data []int64, shape ...int64) (*Tensor, error) {
	return fromSlice(unsafe.Pointer(unsafe.SliceData(data)), len(data), 8, Int64, shape)
}

// FromBytes copies raw little-endian row-major data of dtype dt into a new
// CPU tensor of the given shape.
func FromBytes(raw []byte, dt DType, shape ...int64) (*Tensor, error) {
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("torch: no byte size for %v", dt)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("torch: %d bytes is not a whole number of %v elements", len(raw), dt)
	}
	var p unsafe.Pointer
	if len(raw) > 0 {
		p = unsafe.Pointer(&raw[0])
	} else {
		p = unsafe.Pointer(&size) // libtch reads nothing for zero elements
	}
	return fromSlice(p, len(raw)/size, uint(size), dt, shape)
}

// Size is the byte size of one element.
func (d DType) Size() int {
	switch d {
	case Uint8, Bool:
		return 1
	case Float16, BFloat16:
		return 2
	case Int32, Float32:
		return 4
	case Int64, Float64:
		return 8
	}
	return 0
}

// Bytes copies t's elements to Go as little-endian row-major bytes of t's
// dtype, moving it to the CPU first when needed.
func (t *Tensor) Bytes() ([]byte, error) {
	size := t.DType().Size()
	if size == 0 {
		return nil, fmt.Errorf("torch: no byte size for %v", t.DType())
	}
	var out []byte
	err := t.copyOut(t.DType(), func(n int64) unsafe.Pointer {
		out = make([]byte, n*int64(size))
		if n == 0 {
			return nil
		}
		return unsafe.Pointer(&out[0])
	})
	return out, err
}

// copyOut copies t, converted to dtype dt on the CPU and made contiguous,
// into the Go memory alloc returns for its element count (nil for none).
func (t *Tensor) copyOut(dt DType, alloc func(n int64) unsafe.Pointer) error {
	src := t
	if t.DType() != dt || t.Device() != CPU {
		c, err := t.To(CPU, dt)
		if err != nil {
			return err
		}
		defer c.Free()
		src = c
	}
	cont, err := wrap(func(out *lib.Ctensor) { lib.AtgContiguous(out, src.c) })
	if err != nil {
		return err
	}
	defer cont.Free()
	n := numel(cont.Shape())
	p := alloc(n)
	if p == nil {
		return nil
	}
	return call(func() { lib.AtCopyData(cont.c, p, uint(n), uint(dt.Size())) })
}

func fromSlice(p unsafe.Pointer, n int, elt uint, dt DType, shape []int64) (*Tensor, error) {
	if want := numel(shape); want != int64(n) {
		return nil, fmt.Errorf("torch: shape %v holds %d elements, data has %d", shape, want, n)
	}
	dims := append([]int64(nil), shape...)
	if len(dims) == 0 {
		dims = []int64{1} // a scalar: libtch wants a dims pointer it will not read
	}
	t, err := wrap(func(out *lib.Ctensor) {
		*out = lib.AtTensorOfData(p, dims, uint(len(shape)), elt, int(dt))
	})
	return t, err
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// Shape returns the sizes of t's dimensions.
func (t *Tensor) Shape() []int64 {
	n := lib.AtDim(t.c)
	shape := make([]int64, n)
	if n > 0 {
		lib.AtShape(t.c, unsafe.Pointer(&shape[0]))
	}
	return shape
}

// DType returns t's scalar type.
func (t *Tensor) DType() DType { return DType(lib.AtScalarType(t.c)) }

// Device returns where t lives.
func (t *Tensor) Device() Device { return Device(lib.AtDevice(t.c) + 1) }

// Float32s copies t's values to Go, converting to float32 on the CPU first
// when needed.
func (t *Tensor) Float32s() ([]float32, error) {
	var out []float32
	err := t.copyOut(Float32, func(n int64) unsafe.Pointer {
		out = make([]float32, n)
		if n == 0 {
			return nil
		}
		return unsafe.Pointer(&out[0])
	})
	return out, err
}

// To converts t to a device and dtype, returning a new tensor.
func (t *Tensor) To(dev Device, dt DType) (*Tensor, error) {
	return wrap(func(out *lib.Ctensor) { lib.AtgToDevice(out, t.c, dev.gotch(), int32(dt), 0, 0) })
}

// ZerosLike returns a zero tensor with t's shape, dtype and device.
func (t *Tensor) ZerosLike() (*Tensor, error) {
	return wrap(func(out *lib.Ctensor) { lib.AtgZerosLike(out, t.c) })
}

// Matmul is torch.matmul(a, b).
func Matmul(a, b *Tensor) (*Tensor, error) {
	return wrap(func(out *lib.Ctensor) { lib.AtgMatmul(out, a.c, b.c) })
}

// Mul is elementwise a * b with broadcasting.
func Mul(a, b *Tensor) (*Tensor, error) {
	return wrap(func(out *lib.Ctensor) { lib.AtgMul(out, a.c, b.c) })
}

// Sum reduces every element of t to a scalar of the same dtype.
func (t *Tensor) Sum() (*Tensor, error) {
	return wrap(func(out *lib.Ctensor) { lib.AtgSum(out, t.c, int32(t.DType())) })
}

// SetRequiresGrad marks t as a leaf that accumulates gradients.
func (t *Tensor) SetRequiresGrad(on bool) error {
	flag := int32(0)
	if on {
		flag = 1
	}
	// requires_grad_ returns a new handle to the same tensor; drop it.
	r, err := wrap(func(out *lib.Ctensor) { lib.AtgRequiresGrad_(out, t.c, flag) })
	r.Free()
	return err
}

// Backward runs autograd from the scalar t.
func (t *Tensor) Backward() error {
	return call(func() { lib.AtBackward(t.c, 0, 0) })
}

// CopyFrom overwrites t's values with src's (same shape; dtype and device
// converted), outside autograd, so it also works on trainable leaves.
func (t *Tensor) CopyFrom(src *Tensor) error {
	return call(func() {
		prev := lib.AtGradSetEnabled(0)
		lib.AtCopy_(t.c, src.c)
		lib.AtGradSetEnabled(prev)
	})
}

// ZeroGrad zeroes t's accumulated gradient, if it has one.
func (t *Tensor) ZeroGrad() error {
	g, err := wrap(func(out *lib.Ctensor) { lib.AtgGrad(out, t.c) })
	if err != nil {
		return err
	}
	defer g.Free()
	if !lib.AtDefined(g.c) {
		return nil
	}
	z, err := wrap(func(out *lib.Ctensor) { lib.AtgZero_(out, g.c) })
	z.Free()
	return err
}

// Grad returns a handle to t's accumulated gradient.
func (t *Tensor) Grad() (*Tensor, error) {
	g, err := wrap(func(out *lib.Ctensor) { lib.AtgGrad(out, t.c) })
	if err != nil {
		return nil, err
	}
	if !lib.AtDefined(g.c) {
		g.Free()
		return nil, &Error{Msg: "tensor has no gradient"}
	}
	return g, nil
}
