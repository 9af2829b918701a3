package model

import (
	"fmt"
	"math"

	"github.com/herdml/herd/internal/torch"
)

// Projection names, as in Hugging Face module names and LoRA target_modules.
const (
	QProj    = "q_proj"
	KProj    = "k_proj"
	VProj    = "v_proj"
	OProj    = "o_proj"
	GateProj = "gate_proj"
	UpProj   = "up_proj"
	DownProj = "down_proj"
)

// Projections lists every projection of a layer in herd's fixed order (the
// order of the flat LoRA gradient buffer within a layer).
var Projections = []string{QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj}

// Linear is a base projection: dense weights, or quantised ones (QLoRA).
type Linear interface {
	// Forward is x @ W^T + b.
	Forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor
	// InFeatures and OutFeatures are the weight's shape [out, in].
	InFeatures() int64
	OutFeatures() int64
	// Free releases the weights.
	Free()
}

// Dense is an unquantised linear layer.
type Dense struct {
	W, B *torch.Tensor // B may be nil
}

// Forward implements Linear.
func (d *Dense) Forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return s.Linear(x, d.W, d.B) }

// InFeatures implements Linear.
func (d *Dense) InFeatures() int64 { return d.W.Shape()[1] }

// OutFeatures implements Linear.
func (d *Dense) OutFeatures() int64 { return d.W.Shape()[0] }

// Free implements Linear.
func (d *Dense) Free() { d.W.Free(); d.B.Free() }

// Adapter adds a trainable delta to a base projection's output: LoRA.
type Adapter interface {
	// Delta returns the term added to projection module of layer for input
	// x, or nil when that projection has no adapter.
	Delta(s *torch.Scope, layer int, module string, x *torch.Tensor) *torch.Tensor
}

// Layer is one decoder layer's weights.
type Layer struct {
	InputNorm, PostAttnNorm *torch.Tensor
	Proj                    map[string]Linear // keyed by projection name
}

// Model is a loaded Llama-family model.
type Model struct {
	Config *Config
	DType  torch.DType
	Device torch.Device
	Embed  *torch.Tensor // [vocab, hidden]
	Layers []Layer
	Norm   *torch.Tensor
	LMHead *torch.Tensor // [vocab, hidden]; the same tensor as Embed when tied
	inv    []float64
}

// Free releases every weight.
func (m *Model) Free() {
	if m.LMHead != m.Embed {
		m.LMHead.Free()
	}
	m.Embed.Free()
	m.Norm.Free()
	for _, l := range m.Layers {
		l.InputNorm.Free()
		l.PostAttnNorm.Free()
		for _, p := range l.Proj {
			p.Free()
		}
	}
	m.Layers = nil
}

// Batch is one forward pass's input: token ids [B, S] (int64) on the
// model's device. Sequences are right-padded; padding only needs masking in
// the labels, since causal attention keeps real tokens from seeing it.
type Batch struct {
	IDs *torch.Tensor
}

// Options change how a forward pass runs.
type Options struct {
	Adapter Adapter // nil for the base model
	Train   bool    // enables dropout in adapters
}

// Forward returns logits [B, S, vocab] in float32.
func (m *Model) Forward(s *torch.Scope, b Batch, opt Options) *torch.Tensor {
	h := m.Hidden(s, b, opt)
	logits := s.Linear(h, m.LMHead, nil)
	return s.To(logits, torch.Float32)
}

// Hidden returns the final normalised hidden states [B, S, hidden].
func (m *Model) Hidden(s *torch.Scope, b Batch, opt Options) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	shape := b.IDs.Shape()
	if len(shape) != 2 {
		s.Fail(fmt.Errorf("model: ids must be [batch, seq], got %v", shape))
		return nil
	}
	B, S := shape[0], shape[1]
	pos := make([]int64, S)
	for i := range pos {
		pos[i] = int64(i)
	}
	cosv, sinv := ropeTables(m.inv, pos)
	d := int64(m.Config.HeadDim)
	cos := s.To(s.ToDevice(s.FromFloat32(cosv, S, d), m.Device), m.DType)
	sin := s.To(s.ToDevice(s.FromFloat32(sinv, S, d), m.Device), m.DType)
	// Additive causal mask: -inf above the diagonal.
	mask := s.Triu(s.Full([]int64{S, S}, math.Inf(-1), torch.Float32, m.Device), 1)

	h := s.Embedding(m.Embed, b.IDs)
	for i := range m.Layers {
		h = m.layer(s, i, h, B, S, cos, sin, mask, opt)
	}
	return rmsNorm(s, h, m.Norm, m.Config.RMSNormEps)
}

func (m *Model) proj(s *torch.Scope, layer int, name string, x *torch.Tensor, opt Options) *torch.Tensor {
	y := m.Layers[layer].Proj[name].Forward(s, x)
	if opt.Adapter != nil {
		if delta := opt.Adapter.Delta(s, layer, name, x); delta != nil {
			y = s.Add(y, delta)
		}
	}
	return y
}

func (m *Model) layer(s *torch.Scope, i int, h *torch.Tensor, B, S int64, cos, sin, mask *torch.Tensor, opt Options) *torch.Tensor {
	c := m.Config
	H, KV, D := int64(c.NumHeads), int64(c.NumKVHeads), int64(c.HeadDim)
	l := m.Layers[i]

	x := rmsNorm(s, h, l.InputNorm, c.RMSNormEps)
	q := s.Transpose(s.View(m.proj(s, i, QProj, x, opt), B, S, H, D), 1, 2)
	k := s.Transpose(s.View(m.proj(s, i, KProj, x, opt), B, S, KV, D), 1, 2)
	v := s.Transpose(s.View(m.proj(s, i, VProj, x, opt), B, S, KV, D), 1, 2)
	q, k = rotate(s, q, cos, sin), rotate(s, k, cos, sin)
	k, v = repeatKV(s, k, H/KV), repeatKV(s, v, H/KV)

	scores := s.MulScalar(s.Matmul(q, s.Transpose(k, 2, 3)), 1/math.Sqrt(float64(D)))
	scores = s.Add(scores, s.To(mask, m.DType))
	probs := s.To(s.Softmax(scores, -1, torch.Float32), m.DType)
	attn := s.Reshape(s.Transpose(s.Matmul(probs, v), 1, 2), B, S, H*D)
	h = s.Add(h, m.proj(s, i, OProj, attn, opt))

	x = rmsNorm(s, h, l.PostAttnNorm, c.RMSNormEps)
	gate := s.Silu(m.proj(s, i, GateProj, x, opt))
	up := m.proj(s, i, UpProj, x, opt)
	return s.Add(h, m.proj(s, i, DownProj, s.Mul(gate, up), opt))
}

// rmsNorm is Hugging Face's LlamaRMSNorm: normalise in float32, scale in
// the input dtype.
func rmsNorm(s *torch.Scope, x, w *torch.Tensor, eps float64) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	dt := x.DType()
	x32 := s.To(x, torch.Float32)
	inv := s.Rsqrt(s.AddScalar(s.MeanDim(s.PowScalar(x32, 2), true, -1), eps))
	return s.Mul(w, s.To(s.Mul(x32, inv), dt))
}

// rotate applies rotary embeddings to x [B, heads, S, D]:
// x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1).
func rotate(s *torch.Scope, x, cos, sin *torch.Tensor) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	half := x.Shape()[3] / 2
	x1 := s.Narrow(x, 3, 0, half)
	x2 := s.Narrow(x, 3, half, half)
	rot := s.Cat(3, s.Neg(x2), x1)
	return s.Add(s.Mul(x, cos), s.Mul(rot, sin))
}

// repeatKV repeats each key/value head n times for grouped-query attention:
// [B, KV, S, D] -> [B, KV*n, S, D].
func repeatKV(s *torch.Scope, x *torch.Tensor, n int64) *torch.Tensor {
	if n == 1 || s.Err() != nil {
		return x
	}
	sh := x.Shape()
	B, KV, S, D := sh[0], sh[1], sh[2], sh[3]
	e := s.Expand(s.Unsqueeze(x, 2), B, KV, n, S, D)
	return s.Reshape(e, B, KV*n, S, D)
}
