package torch

// #include <stdint.h>
// void herd_adamw_step(void **params, void **grads, void **exp_avg, void **exp_avg_sq, int n,
//                      double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step);
import "C"

import (
	"fmt"
	"unsafe"
)

// AdamWConfig holds AdamW's hyper-parameters; the learning rate is given
// per step so that schedulers stay outside the optimizer.
type AdamWConfig struct {
	Beta1, Beta2 float64 // moment decay rates, in [0, 1); PyTorch: 0.9, 0.999
	Eps          float64 // denominator guard, > 0; PyTorch: 1e-8
	WeightDecay  float64 // decoupled weight decay, >= 0; PyTorch: 0.01
}

// AdamW is torch.optim.AdamW (non-fused) over a fixed list of parameters,
// with its moment tensors held here so that they can be checkpointed.
type AdamW struct {
	cfg        AdamWConfig
	params     []*Tensor
	m, v       []*Tensor
	step       int64
	cp, cm, cv []unsafe.Pointer
}

// NewAdamW allocates zeroed moments for params. The optimizer borrows the
// parameter handles; Free releases only what it allocated.
func NewAdamW(params []*Tensor, cfg AdamWConfig) (*AdamW, error) {
	if cfg.Beta1 < 0 || cfg.Beta1 >= 1 || cfg.Beta2 < 0 || cfg.Beta2 >= 1 || cfg.Eps <= 0 || cfg.WeightDecay < 0 {
		return nil, fmt.Errorf("torch: invalid AdamW config %+v", cfg)
	}
	o := &AdamW{cfg: cfg, params: params}
	for _, p := range params {
		m, err := p.ZerosLike()
		if err != nil {
			o.Free()
			return nil, err
		}
		v, err := p.ZerosLike()
		if err != nil {
			m.Free()
			o.Free()
			return nil, err
		}
		o.m, o.v = append(o.m, m), append(o.v, v)
		o.cp, o.cm, o.cv = append(o.cp, unsafe.Pointer(p.c)), append(o.cm, unsafe.Pointer(m.c)), append(o.cv, unsafe.Pointer(v.c))
	}
	return o, nil
}

// Step applies one update with learning rate lr, grads[i] being the
// gradient of params[i].
func (o *AdamW) Step(grads []*Tensor, lr float64) error {
	if len(grads) != len(o.params) {
		return fmt.Errorf("torch: AdamW has %d parameters, got %d gradients", len(o.params), len(grads))
	}
	if len(grads) == 0 {
		return nil
	}
	cg := make([]unsafe.Pointer, len(grads))
	for i, g := range grads {
		cg[i] = unsafe.Pointer(g.c)
	}
	o.step++
	return call(func() {
		C.herd_adamw_step(&o.cp[0], &cg[0], &o.cm[0], &o.cv[0], C.int(len(grads)),
			C.double(lr), C.double(o.cfg.Beta1), C.double(o.cfg.Beta2), C.double(o.cfg.Eps), C.double(o.cfg.WeightDecay), C.int64_t(o.step))
	})
}

// Steps is the number of updates applied so far.
func (o *AdamW) Steps() int64 { return o.step }

// Free releases the moment tensors.
func (o *AdamW) Free() {
	for _, t := range o.m {
		t.Free()
	}
	for _, t := range o.v {
		t.Free()
	}
	o.m, o.v, o.cm, o.cv = nil, nil, nil, nil
}

// Moments returns copies of the first and second moments, one flat slice
// per parameter, for checkpoints.
func (o *AdamW) Moments() (m, v [][]float32, err error) {
	for i := range o.m {
		mi, err := o.m[i].Float32s()
		if err != nil {
			return nil, nil, err
		}
		vi, err := o.v[i].Float32s()
		if err != nil {
			return nil, nil, err
		}
		m, v = append(m, mi), append(v, vi)
	}
	return m, v, nil
}

// Restore overwrites the moments and the step count from a checkpoint.
func (o *AdamW) Restore(m, v [][]float32, steps int64) error {
	if len(m) != len(o.m) || len(v) != len(o.v) {
		return fmt.Errorf("torch: AdamW state has %d/%d moments, optimizer has %d parameters", len(m), len(v), len(o.m))
	}
	for i := range o.m {
		for _, pair := range []struct {
			dst *Tensor
			src []float32
		}{{o.m[i], m[i]}, {o.v[i], v[i]}} {
			t, err := FromFloat32(pair.src, pair.dst.Shape()...)
			if err != nil {
				return fmt.Errorf("torch: AdamW moment %d: %w", i, err)
			}
			err = pair.dst.CopyFrom(t)
			t.Free()
			if err != nil {
				return err
			}
		}
	}
	o.step = steps
	return nil
}
