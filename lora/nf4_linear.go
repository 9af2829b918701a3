package lora

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
)

// NF4Linear is a frozen base projection whose weight is held on the device
// as NF4 (QLoRA): packed 4-bit codes and their block absmax, optionally
// double-quantised. Forward decodes the weight to the input's dtype inside
// libtorch, runs the linear layer and drops the dense copy; the backward
// pass decodes it again, so gradients reach the input (and the LoRA
// adapters before it) while no dense weight stays alive. It implements
// model.Linear.
type NF4Linear struct {
	q    torch.NF4
	bias *torch.Tensor // compute dtype, may be nil; not quantised
}

var _ model.Linear = (*NF4Linear)(nil)

// NewNF4Linear uploads q to dev and takes ownership of bias (which may be
// nil; it stays dense, as bitsandbytes keeps it). q must be [out, in].
func NewNF4Linear(q *NF4Weights, bias *torch.Tensor, dev torch.Device) (*NF4Linear, error) {
	if len(q.Shape) != 2 {
		return nil, fmt.Errorf("lora: nf4 linear weight must be [out, in], got shape %v", q.Shape)
	}
	l := &NF4Linear{q: torch.NF4{Shape: append([]int64(nil), q.Shape...), BlockSize: NF4Block}}
	var err error
	upload := func(raw []byte, dt torch.DType, n int) *torch.Tensor {
		if err != nil {
			return nil
		}
		var t *torch.Tensor
		t, err = toDevice(raw, dt, int64(n), dev)
		return t
	}
	l.q.Packed = upload(q.Packed, torch.Uint8, len(q.Packed))
	if q.DoubleQuant() {
		l.q.Absmax = upload(q.QAbsmax, torch.Uint8, len(q.QAbsmax))
		l.q.Absmax2 = upload(f32Bytes(q.Absmax2), torch.Float32, len(q.Absmax2))
		l.q.Offset, l.q.BlockSize2 = q.Offset, NF4Block2
		if err == nil {
			l.q.Code2, err = dynamicMapOn(dev)
		}
	} else {
		l.q.Absmax = upload(f32Bytes(q.Absmax), torch.Float32, len(q.Absmax))
	}
	if err != nil {
		l.Free()
		return nil, fmt.Errorf("lora: nf4 weights to %v: %w", dev, err)
	}
	l.bias = bias
	return l, nil
}

// toDevice copies raw (n elements of dt) into a 1-D tensor on dev.
func toDevice(raw []byte, dt torch.DType, n int64, dev torch.Device) (*torch.Tensor, error) {
	t, err := torch.FromBytes(raw, dt, n)
	if err != nil || dev == torch.CPU {
		return t, err
	}
	defer t.Free()
	return t.To(dev, dt)
}

// f32Bytes views v as its little-endian bytes (amd64 and arm64 are
// little-endian).
func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// The dynamic code book is a constant shared by every double-quantised
// weight on a device; it lives as long as the process (1 KiB per device).
var (
	dynMu    sync.Mutex
	dynCodes = map[torch.Device]*torch.Tensor{}
)

func dynamicMapOn(dev torch.Device) (*torch.Tensor, error) {
	dynMu.Lock()
	defer dynMu.Unlock()
	if t := dynCodes[dev]; t != nil {
		return t, nil
	}
	m := dynamicMap
	t, err := toDevice(f32Bytes(m[:]), torch.Float32, 256, dev)
	if err != nil {
		return nil, err
	}
	dynCodes[dev] = t
	return t, nil
}

// Forward implements model.Linear: x @ W^T + b with W decoded on the fly.
func (l *NF4Linear) Forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	return s.NF4Linear(x, &l.q, l.bias)
}

// InFeatures implements model.Linear.
func (l *NF4Linear) InFeatures() int64 { return l.q.Shape[1] }

// OutFeatures implements model.Linear.
func (l *NF4Linear) OutFeatures() int64 { return l.q.Shape[0] }

// Free implements model.Linear. The shared code book stays.
func (l *NF4Linear) Free() {
	l.q.Packed.Free()
	l.q.Absmax.Free()
	l.q.Absmax2.Free()
	l.q.Code2 = nil
	l.bias.Free()
	l.bias = nil
}

// DoubleQuant reports whether the absmax are quantised.
func (l *NF4Linear) DoubleQuant() bool { return l.q.Nested() }

// Quantized returns the device tensors of the weight, borrowed.
func (l *NF4Linear) Quantized() *torch.NF4 { return &l.q }

// Dequantize returns the dense weight [out, in] in dtype dt, owned by s.
func (l *NF4Linear) Dequantize(s *torch.Scope, dt torch.DType) *torch.Tensor {
	return s.NF4Dequantize(&l.q, dt)
}

// WeightBytes is the device memory holding the weight, measured on the
// tensors held: packed codes, absmax (or quantised absmax, their scales
// and the 4-byte offset). The shared code book and the bias are not
// counted.
func (l *NF4Linear) WeightBytes() int64 {
	b := tensorBytes(l.q.Packed) + tensorBytes(l.q.Absmax)
	if l.q.Nested() {
		b += tensorBytes(l.q.Absmax2) + 4
	}
	return b
}

func tensorBytes(t *torch.Tensor) int64 {
	if t == nil {
		return 0
	}
	return numel(t.Shape()) * int64(t.DType().Size())
}

// NF4Factory returns the model.LinearFactory of QLoRA: it quantises each
// dense projection weight it is given to NF4 (on the host, see
// QuantizeNF4), with double quantisation of the absmax when doubleQuant,
// places the result on the weight's device and frees the dense weight.
// Biases stay dense. Use it as model.LoadOptions.NewLinear.
func NF4Factory(doubleQuant bool) model.LinearFactory {
	return func(name string, w, b *torch.Tensor) (model.Linear, error) {
		defer w.Free()
		dev := w.Device()
		v, err := w.Float32s()
		if err != nil {
			b.Free()
			return nil, err
		}
		q, err := QuantizeNF4(v, w.Shape(), doubleQuant)
		if err != nil {
			b.Free()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		l, err := NewNF4Linear(q, b, dev)
		if err != nil {
			b.Free()
			return nil, err
		}
		return l, nil
	}
}

// ProjectionMemory is what a model's base projections (q/k/v/o and MLP)
// hold on the device.
type ProjectionMemory struct {
	Params      int64 // weight elements, out*in summed; biases excluded
	WeightBytes int64 // bytes holding those weights (for NF4: codes and quantisation state)
	BiasBytes   int64 // bytes of the (dense) biases
	NF4         int   // projections stored as NF4
	Dense       int   // projections stored dense
}

// BytesPerParam is WeightBytes / Params.
func (p ProjectionMemory) BytesPerParam() float64 {
	if p.Params == 0 {
		return 0
	}
	return float64(p.WeightBytes) / float64(p.Params)
}

// MeasureProjections sums the memory of m's base projections, measured on
// the tensors they hold.
func MeasureProjections(m *model.Model) ProjectionMemory {
	var p ProjectionMemory
	for _, layer := range m.Layers {
		for _, lin := range layer.Proj {
			p.Params += lin.InFeatures() * lin.OutFeatures()
			switch l := lin.(type) {
			case *NF4Linear:
				p.NF4++
				p.WeightBytes += l.WeightBytes()
				p.BiasBytes += tensorBytes(l.bias)
			case *model.Dense:
				p.Dense++
				p.WeightBytes += tensorBytes(l.W)
				p.BiasBytes += tensorBytes(l.B)
			}
		}
	}
	return p
}
