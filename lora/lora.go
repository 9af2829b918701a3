// Package lora owns LoRA adapters on a model's projections: their PEFT
// initialisation, the forward delta, the flat gradient buffer the
// collective all-reduces, and saving and loading in PEFT's layout so that
// peft.PeftModel.from_pretrained reads herd's adapters unchanged. It knows
// nothing about the network.
package lora

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
)

// Config is a LoRA adapter's shape and scaling.
type Config struct {
	R             int      // rank, > 0
	Alpha         float64  // scaling numerator, > 0
	Dropout       float64  // on the adapter input during training, [0, 1)
	TargetModules []string // projections that get adapters (model.Projections names)
	RSLoRA        bool     // scale by alpha/sqrt(r) instead of alpha/r
}

// Scaling is the factor applied to B(A(x)).
func (c Config) Scaling() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.R <= 0 {
		errs = append(errs, fmt.Errorf("lora.r: must be > 0, got %d", c.R))
	}
	if c.Alpha <= 0 {
		errs = append(errs, fmt.Errorf("lora.alpha: must be > 0, got %g", c.Alpha))
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		errs = append(errs, fmt.Errorf("lora.dropout: must be in [0, 1), got %g", c.Dropout))
	}
	if len(c.TargetModules) == 0 {
		errs = append(errs, errors.New("lora.target_modules: empty"))
	}
	for _, m := range c.TargetModules {
		if !slices.Contains(model.Projections, m) {
			errs = append(errs, fmt.Errorf("lora.target_modules: %q is not one of %v", m, model.Projections))
		}
	}
	return errors.Join(errs...)
}

// Key names one adapted projection.
type Key struct {
	Layer  int
	Module string
}

// Pair is one projection's adapter: A [r, in] and B [out, r].
type Pair struct {
	Key  Key
	A, B *torch.Tensor
}

// Adapter is a set of LoRA pairs on a model. It implements model.Adapter.
type Adapter struct {
	cfg     Config
	scaling float64
	pairs   []Pair // in flat-buffer order
	index   map[Key]int
	// Training enables dropout in Delta.
	Training bool
}

// New creates adapters on every targeted projection of m with PEFT's
// initialisation: A Kaiming-uniform (a = sqrt(5), so U(-1/sqrt(in), 1/sqrt(in))),
// B zero. Values come from a PCG stream seeded with seed, so every worker
// given the same seed starts from the same adapter.
func New(m *model.Model, cfg Config, seed uint64) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x4c6f5241))
	return build(m, cfg, func(k Key, out, in int64) ([]float32, []float32) {
		bound := 1 / math.Sqrt(float64(in))
		a := make([]float32, int64(cfg.R)*in)
		for i := range a {
			a[i] = float32((rng.Float64()*2 - 1) * bound)
		}
		return a, make([]float32, out*int64(cfg.R))
	})
}

// build makes the pairs in flat order, with values from init (float32,
// row-major), converted to the model's dtype and device.
func build(m *model.Model, cfg Config, init func(k Key, out, in int64) (a, b []float32)) (*Adapter, error) {
	ad := &Adapter{cfg: cfg, scaling: cfg.Scaling(), index: map[Key]int{}}
	for _, k := range keys(m.Config.NumLayers, cfg.TargetModules) {
		shape := m.Config.ProjShape(k.Module)
		out, in := shape[0], shape[1]
		av, bv := init(k, out, in)
		a, err := param(av, m, int64(cfg.R), in)
		if err != nil {
			ad.Free()
			return nil, fmt.Errorf("lora %s A: %w", model.WeightName(k.Layer, k.Module), err)
		}
		b, err := param(bv, m, out, int64(cfg.R))
		if err != nil {
			a.Free()
			ad.Free()
			return nil, fmt.Errorf("lora %s B: %w", model.WeightName(k.Layer, k.Module), err)
		}
		ad.index[k] = len(ad.pairs)
		ad.pairs = append(ad.pairs, Pair{Key: k, A: a, B: b})
	}
	return ad, nil
}

// keys lists adapted projections in the documented flat order: by layer,
// then by model.Projections order.
func keys(layers int, targets []string) []Key {
	var out []Key
	for l := 0; l < layers; l++ {
		for _, p := range model.Projections {
			if slices.Contains(targets, p) {
				out = append(out, Key{l, p})
			}
		}
	}
	return out
}

// param makes a trainable leaf on m's device. Adapters are trained in
// float32 whatever the base dtype: PEFT keeps them in float32 too under
// autocast, and fp32 moments keep AdamW stable.
func param(v []float32, m *model.Model, shape ...int64) (*torch.Tensor, error) {
	t, err := torch.FromFloat32(v, shape...)
	if err != nil {
		return nil, err
	}
	if m.Device != torch.CPU {
		moved, err := t.To(m.Device, torch.Float32)
		t.Free()
		if err != nil {
			return nil, err
		}
		t = moved
	}
	if err := t.SetRequiresGrad(true); err != nil {
		t.Free()
		return nil, err
	}
	return t, nil
}

// Config returns the adapter's configuration.
func (ad *Adapter) Config() Config { return ad.cfg }

// Pairs returns the adapter's pairs in flat-buffer order.
func (ad *Adapter) Pairs() []Pair { return ad.pairs }

// Params returns every trainable tensor in flat-buffer order: A then B of
// each pair.
func (ad *Adapter) Params() []*torch.Tensor {
	out := make([]*torch.Tensor, 0, 2*len(ad.pairs))
	for _, p := range ad.pairs {
		out = append(out, p.A, p.B)
	}
	return out
}

// Delta implements model.Adapter: scaling * B(A(dropout(x))), computed in
// float32 and returned in x's dtype.
func (ad *Adapter) Delta(s *torch.Scope, layer int, module string, x *torch.Tensor) *torch.Tensor {
	i, ok := ad.index[Key{layer, module}]
	if !ok || s.Err() != nil {
		return nil
	}
	p := ad.pairs[i]
	x32 := s.To(x, torch.Float32)
	h := s.Linear(s.Dropout(x32, ad.cfg.Dropout, ad.Training), p.A, nil)
	return s.To(s.MulScalar(s.Linear(h, p.B, nil), ad.scaling), x.DType())
}

// Free releases every adapter tensor.
func (ad *Adapter) Free() {
	for _, p := range ad.pairs {
		p.A.Free()
		p.B.Free()
	}
	ad.pairs = nil
}
