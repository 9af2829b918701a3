package lora

import (
	"fmt"

	"github.com/herdml/herd/internal/torch"
)

// The flat gradient buffer is what the collective all-reduces: every LoRA
// gradient as one contiguous float32 slice, in a fixed order that every
// worker shares. The order is by layer (0 first), then by projection in
// model.Projections order (q, k, v, o, gate, up, down; only the targeted
// ones), then A before B; each matrix row-major. For layer 0 with q_proj
// and v_proj targeted: q.A [r, in], q.B [out, r], v.A, v.B, then layer 1.

// NumParams is the length of the flat buffer.
func (ad *Adapter) NumParams() int {
	n := 0
	for _, p := range ad.Params() {
		n += int(numel(p.Shape()))
	}
	return n
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// Grads copies the accumulated gradients into dst (len NumParams()). A
// parameter that received no gradient contributes zeros.
func (ad *Adapter) Grads(dst []float32) error {
	if len(dst) != ad.NumParams() {
		return fmt.Errorf("lora: gradient buffer has %d elements, adapter has %d", len(dst), ad.NumParams())
	}
	s := torch.NewScope()
	defer s.Close()
	var flat []*torch.Tensor
	for _, p := range ad.Params() {
		g, err := p.Grad()
		if err != nil {
			g = s.Zeros(p.Shape(), torch.Float32, p.Device())
		} else {
			s.Own(g)
		}
		flat = append(flat, s.Reshape(g, -1))
	}
	all := s.ToDevice(s.Cat(0, flat...), torch.CPU)
	v := s.Float32s(all)
	if err := s.Err(); err != nil {
		return fmt.Errorf("lora: read gradients: %w", err)
	}
	copy(dst, v)
	return nil
}

// GradTensors cuts a flat buffer back into one tensor per parameter (in
// Params order, on the adapter's device), for the optimizer. The caller
// frees them, through the scope.
func (ad *Adapter) GradTensors(s *torch.Scope, src []float32) ([]*torch.Tensor, error) {
	if len(src) != ad.NumParams() {
		return nil, fmt.Errorf("lora: gradient buffer has %d elements, adapter has %d", len(src), ad.NumParams())
	}
	var out []*torch.Tensor
	off := 0
	for _, p := range ad.Params() {
		shape := p.Shape()
		n := int(numel(shape))
		out = append(out, s.ToDevice(s.FromFloat32(src[off:off+n], shape...), p.Device()))
		off += n
	}
	return out, s.Err()
}

// ZeroGrad clears every parameter's accumulated gradient.
func (ad *Adapter) ZeroGrad() error {
	for _, p := range ad.Params() {
		if err := p.ZeroGrad(); err != nil {
			return err
		}
	}
	return nil
}

// Values returns the adapter's parameters as one flat float32 slice in the
// same order as the gradient buffer: what a joining worker is sent.
func (ad *Adapter) Values() ([]float32, error) {
	out := make([]float32, 0, ad.NumParams())
	for _, p := range ad.Params() {
		v, err := p.Float32s()
		if err != nil {
			return nil, fmt.Errorf("lora: read parameters: %w", err)
		}
		out = append(out, v...)
	}
	return out, nil
}

// SetValues overwrites every parameter from a flat slice laid out as Values.
func (ad *Adapter) SetValues(src []float32) error {
	if len(src) != ad.NumParams() {
		return fmt.Errorf("lora: parameter buffer has %d elements, adapter has %d", len(src), ad.NumParams())
	}
	off := 0
	for _, p := range ad.Params() {
		shape := p.Shape()
		n := int(numel(shape))
		t, err := torch.FromFloat32(src[off:off+n], shape...)
		if err != nil {
			return err
		}
		err = p.CopyFrom(t)
		t.Free()
		if err != nil {
			return fmt.Errorf("lora: set parameters: %w", err)
		}
		off += n
	}
	return nil
}
