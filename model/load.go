package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/internal/torch"
)

// TensorSource is where weights come from: a safetensors model directory,
// or anything else that can name tensors and hand out their bytes.
type TensorSource interface {
	Has(name string) bool
	Tensor(name string) (safetensors.Info, []byte, error)
}

// LinearFactory builds a base projection from its loaded weight and bias
// (bias may be nil). It owns w and b afterwards. The default keeps them
// dense; QLoRA quantises them.
type LinearFactory func(name string, w, b *torch.Tensor) (Linear, error)

// LoadOptions say how to place the weights.
type LoadOptions struct {
	DType  torch.DType  // compute dtype: Float32, BFloat16 or Float16
	Device torch.Device // torch.CPU or torch.CUDA(n)
	// NewLinear builds the q/k/v/o and MLP projections; nil keeps them dense.
	NewLinear LinearFactory
}

// Load reads a Hugging Face model directory: config.json and
// model.safetensors or sharded model-*.safetensors with their index.
func Load(dir string, opt LoadOptions) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	st, err := safetensors.OpenModel(dir)
	if err != nil {
		return nil, fmt.Errorf("load model weights: %w", err)
	}
	defer st.Close()
	m, err := FromSource(cfg, st, opt)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	return m, nil
}

// WeightName returns the Hugging Face name of projection module in layer.
func WeightName(layer int, module string) string {
	switch module {
	case GateProj, UpProj, DownProj:
		return fmt.Sprintf("model.layers.%d.mlp.%s", layer, module)
	}
	return fmt.Sprintf("model.layers.%d.self_attn.%s", layer, module)
}

// ProjShape returns [out, in] of projection module under c.
func (c *Config) ProjShape(module string) [2]int64 {
	hd, q, kv, in := int64(c.HiddenSize), int64(c.NumHeads*c.HeadDim), int64(c.NumKVHeads*c.HeadDim), int64(c.IntermediateSize)
	switch module {
	case QProj:
		return [2]int64{q, hd}
	case KProj, VProj:
		return [2]int64{kv, hd}
	case OProj:
		return [2]int64{hd, q}
	case GateProj, UpProj:
		return [2]int64{in, hd}
	case DownProj:
		return [2]int64{hd, in}
	}
	panic("model: unknown projection " + module)
}

// HasBias reports whether projection module carries a bias under c.
func (c *Config) HasBias(module string) bool {
	switch module {
	case QProj, KProj, VProj:
		return c.QKVBias()
	case OProj:
		return c.OBias()
	}
	return false
}

// FromSource builds a model from the weights in src.
func FromSource(cfg *Config, src TensorSource, opt LoadOptions) (m *Model, err error) {
	if opt.NewLinear == nil {
		opt.NewLinear = func(_ string, w, b *torch.Tensor) (Linear, error) { return &Dense{W: w, B: b}, nil }
	}
	switch opt.DType {
	case torch.Float32, torch.BFloat16, torch.Float16:
	default:
		return nil, fmt.Errorf("model: dtype %v is not a compute dtype (float32, bfloat16, float16)", opt.DType)
	}
	if err := torch.Load(); err != nil {
		return nil, err
	}
	m = &Model{Config: cfg, DType: opt.DType, Device: opt.Device, inv: invFreq(cfg)}
	defer func() {
		if err != nil {
			m.Free()
			m = nil
		}
	}()
	l := &loader{src: src, opt: opt}
	hd, v := int64(cfg.HiddenSize), int64(cfg.VocabSize)
	m.Embed = l.get("model.embed_tokens.weight", v, hd)
	m.Norm = l.get("model.norm.weight", hd)
	if cfg.TieWordEmbeddings {
		m.LMHead = m.Embed
	} else {
		m.LMHead = l.get("lm_head.weight", v, hd)
	}
	for i := 0; i < cfg.NumLayers && l.err == nil; i++ {
		layer := Layer{
			InputNorm:    l.get(fmt.Sprintf("model.layers.%d.input_layernorm.weight", i), hd),
			PostAttnNorm: l.get(fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", i), hd),
			Proj:         map[string]Linear{},
		}
		m.Layers = append(m.Layers, layer)
		for _, p := range Projections {
			name := WeightName(i, p)
			shape := cfg.ProjShape(p)
			w := l.get(name+".weight", shape[0], shape[1])
			var b *torch.Tensor
			if cfg.HasBias(p) {
				b = l.get(name+".bias", shape[0])
			}
			if l.err != nil {
				w.Free()
				b.Free()
				break
			}
			lin, err := opt.NewLinear(name, w, b)
			if err != nil {
				return m, fmt.Errorf("%s: %w", name, err)
			}
			layer.Proj[p] = lin
		}
	}
	return m, l.err
}

// loader reads tensors one by one and keeps the first error.
type loader struct {
	src TensorSource
	opt LoadOptions
	err error
}

// ShapeError is a weight whose shape is not what config.json implies.
type ShapeError struct {
	Tensor          string
	Expected, Found []int64
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("tensor %s: expected shape %v, found %v", e.Tensor, e.Expected, e.Found)
}

// ErrMissingTensor is returned, wrapped with the name, for an absent weight.
var ErrMissingTensor = errors.New("tensor missing")

func (l *loader) get(name string, shape ...int64) *torch.Tensor {
	if l.err != nil {
		return nil
	}
	if !l.src.Has(name) {
		l.err = fmt.Errorf("%w: %s (expected shape %v)", ErrMissingTensor, name, shape)
		return nil
	}
	info, raw, err := l.src.Tensor(name)
	if err != nil {
		l.err = err
		return nil
	}
	if !slices.Equal(info.Shape, shape) {
		l.err = &ShapeError{Tensor: name, Expected: shape, Found: info.Shape}
		return nil
	}
	dt, err := TorchDType(info.DType)
	if err != nil {
		l.err = fmt.Errorf("tensor %s: %w", name, err)
		return nil
	}
	t, err := torch.FromBytes(raw, dt, shape...)
	if err != nil {
		l.err = fmt.Errorf("tensor %s: %w", name, err)
		return nil
	}
	if dt == l.opt.DType && l.opt.Device == torch.CPU {
		return t
	}
	defer t.Free()
	out, err := t.To(l.opt.Device, l.opt.DType)
	if err != nil {
		l.err = fmt.Errorf("tensor %s: %w", name, err)
	}
	return out
}

// TorchDType maps a safetensors weight dtype to libtorch's.
func TorchDType(d safetensors.DType) (torch.DType, error) {
	switch d {
	case safetensors.F32:
		return torch.Float32, nil
	case safetensors.BF16:
		return torch.BFloat16, nil
	case safetensors.F16:
		return torch.Float16, nil
	case safetensors.F64:
		return torch.Float64, nil
	}
	return 0, fmt.Errorf("dtype %s is not a floating-point weight type", d)
}
