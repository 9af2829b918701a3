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

// Batch is one forward pass's input: token ids [B, T] (int64) on the
// model's device. For training, sequences are right-padded and nothing else
// is needed: causal attention keeps real tokens from seeing the padding,
// and the labels mask it. For generation, Valid and a KV cache come in.
type Batch struct {
	IDs *torch.Tensor
	// Valid marks real tokens (B*T, row-major); nil means all are real.
	// Padding keys are masked out of attention and positions count only
	// real tokens, as Hugging Face does with attention_mask.
	Valid []bool
}

// Options change how a forward pass runs.
type Options struct {
	Adapter Adapter // nil for the base model
	// Cache, when set, holds the keys and values of earlier tokens; the
	// pass attends to them and appends its own.
	Cache *KVCache
}

// KVCache keeps every layer's keys and values [B, KV, L, D] between
// generation steps, with the validity of each key position.
type KVCache struct {
	K, V  []*torch.Tensor
	valid []bool // B*L, row-major
	next  []int64
	b, l  int64
}

// Len is the number of cached positions.
func (c *KVCache) Len() int64 { return c.l }

// Free releases the cached tensors.
func (c *KVCache) Free() {
	for i := range c.K {
		c.K[i].Free()
		c.V[i].Free()
	}
	c.K, c.V = nil, nil
}

// Forward returns logits [B, T, vocab] in float32.
func (m *Model) Forward(s *torch.Scope, b Batch, opt Options) *torch.Tensor {
	h := m.Hidden(s, b, opt)
	logits := s.Linear(h, m.LMHead, nil)
	return s.To(logits, torch.Float32)
}

// attnInputs are what every layer's attention needs for one pass.
type attnInputs struct {
	cos, sin *torch.Tensor // [T, D] or [B, 1, T, D]
	mask     *torch.Tensor // additive, broadcastable to [B, H, T, L+T]
}

// Hidden returns the final normalised hidden states [B, T, hidden].
func (m *Model) Hidden(s *torch.Scope, b Batch, opt Options) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	shape := b.IDs.Shape()
	if len(shape) != 2 {
		s.Fail(fmt.Errorf("model: ids must be [batch, seq], got %v", shape))
		return nil
	}
	B, T := shape[0], shape[1]
	var in attnInputs
	if opt.Cache == nil && b.Valid == nil {
		in = m.trainInputs(s, T)
	} else {
		in = m.cachedInputs(s, B, T, b.Valid, opt.Cache)
	}
	h := s.Embedding(m.Embed, b.IDs)
	for i := range m.Layers {
		h = m.layer(s, i, h, B, T, in, opt)
	}
	if opt.Cache != nil && s.Err() == nil {
		opt.Cache.l += T
	}
	return rmsNorm(s, h, m.Norm, m.Config.RMSNormEps)
}

// trainInputs: positions 0..T-1 for every row and a plain causal mask.
func (m *Model) trainInputs(s *torch.Scope, T int64) attnInputs {
	pos := make([]int64, T)
	for i := range pos {
		pos[i] = int64(i)
	}
	cosv, sinv := ropeTables(m.inv, pos)
	d := int64(m.Config.HeadDim)
	return attnInputs{
		cos: s.To(s.ToDevice(s.FromFloat32(cosv, T, d), m.Device), m.DType),
		sin: s.To(s.ToDevice(s.FromFloat32(sinv, T, d), m.Device), m.DType),
		// Additive causal mask: -inf above the diagonal.
		mask: s.To(s.Triu(s.Full([]int64{T, T}, math.Inf(-1), torch.Float32, m.Device), 1), m.DType),
	}
}

// cachedInputs: per-row positions that count only valid tokens, and a mask
// [B, 1, T, L+T] that is causal over cache and new tokens and hides
// padding keys.
func (m *Model) cachedInputs(s *torch.Scope, B, T int64, valid []bool, c *KVCache) attnInputs {
	if valid == nil {
		valid = make([]bool, B*T)
		for i := range valid {
			valid[i] = true
		}
	}
	if int64(len(valid)) != B*T {
		s.Fail(fmt.Errorf("model: %d validity flags for a [%d %d] batch", len(valid), B, T))
		return attnInputs{}
	}
	var L int64
	var past []bool
	var next []int64
	if c != nil {
		if c.b == 0 && c.l == 0 {
			c.b, c.next = B, make([]int64, B)
		}
		if c.b != B {
			s.Fail(fmt.Errorf("model: cache holds %d rows, batch has %d", c.b, B))
			return attnInputs{}
		}
		L, past, next = c.l, c.valid, c.next
	} else {
		next = make([]int64, B)
	}
	total := L + T
	pos := make([]int64, B*T)
	keyValid := make([]bool, B*total)
	for r := int64(0); r < B; r++ {
		copy(keyValid[r*total:], past[r*L:(r+1)*L])
		for t := int64(0); t < T; t++ {
			v := valid[r*T+t]
			keyValid[r*total+L+t] = v
			pos[r*T+t] = next[r]
			if v {
				next[r]++
			}
		}
	}
	maskv := make([]float32, B*T*total)
	ninf := float32(math.Inf(-1))
	for r := int64(0); r < B; r++ {
		for t := int64(0); t < T; t++ {
			row := maskv[(r*T+t)*total : (r*T+t+1)*total]
			any := false
			for j := int64(0); j < total; j++ {
				if j > L+t || !keyValid[r*total+j] {
					row[j] = ninf
				} else {
					any = true
				}
			}
			// A padding query sees nothing; let it see itself so softmax
			// stays finite. Its output is never used.
			if !any {
				row[L+t] = 0
			}
		}
	}
	if c != nil {
		c.valid = keyValid
	}
	cosv, sinv := ropeTables(m.inv, pos)
	d := int64(m.Config.HeadDim)
	return attnInputs{
		cos:  s.To(s.ToDevice(s.FromFloat32(cosv, B, 1, T, d), m.Device), m.DType),
		sin:  s.To(s.ToDevice(s.FromFloat32(sinv, B, 1, T, d), m.Device), m.DType),
		mask: s.To(s.ToDevice(s.FromFloat32(maskv, B, 1, T, total), m.Device), m.DType),
	}
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

func (m *Model) layer(s *torch.Scope, i int, h *torch.Tensor, B, T int64, in attnInputs, opt Options) *torch.Tensor {
	c := m.Config
	H, KV, D := int64(c.NumHeads), int64(c.NumKVHeads), int64(c.HeadDim)
	l := m.Layers[i]

	x := rmsNorm(s, h, l.InputNorm, c.RMSNormEps)
	q := s.Transpose(s.View(m.proj(s, i, QProj, x, opt), B, T, H, D), 1, 2)
	k := s.Transpose(s.View(m.proj(s, i, KProj, x, opt), B, T, KV, D), 1, 2)
	v := s.Transpose(s.View(m.proj(s, i, VProj, x, opt), B, T, KV, D), 1, 2)
	q, k = rotate(s, q, in.cos, in.sin), rotate(s, k, in.cos, in.sin)
	if cache := opt.Cache; cache != nil && s.Err() == nil {
		k, v = appendCache(s, cache, i, k, v)
	}
	k, v = repeatKV(s, k, H/KV), repeatKV(s, v, H/KV)

	scores := s.MulScalar(s.Matmul(q, s.Transpose(k, 2, 3)), 1/math.Sqrt(float64(D)))
	scores = s.Add(scores, in.mask)
	probs := s.To(s.Softmax(scores, -1, torch.Float32), m.DType)
	attn := s.Reshape(s.Transpose(s.Matmul(probs, v), 1, 2), B, T, H*D)
	h = s.Add(h, m.proj(s, i, OProj, attn, opt))

	x = rmsNorm(s, h, l.PostAttnNorm, c.RMSNormEps)
	gate := s.Silu(m.proj(s, i, GateProj, x, opt))
	up := m.proj(s, i, UpProj, x, opt)
	return s.Add(h, m.proj(s, i, DownProj, s.Mul(gate, up), opt))
}

// appendCache concatenates layer i's cached keys and values with the new
// ones, keeps the result in the cache (outside the scope) and returns it.
func appendCache(s *torch.Scope, c *KVCache, i int, k, v *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
	for len(c.K) <= i {
		c.K, c.V = append(c.K, nil), append(c.V, nil)
	}
	if c.K[i] != nil {
		k, v = s.Cat(2, c.K[i], k), s.Cat(2, c.V[i], v)
	} else {
		k, v = s.Contiguous(k), s.Contiguous(v)
	}
	if s.Err() != nil {
		return nil, nil
	}
	// The detached copies are what outlives the step.
	nk, nv := s.Release(s.Detach(k)), s.Release(s.Detach(v))
	c.K[i].Free()
	c.V[i].Free()
	c.K[i], c.V[i] = nk, nv
	return k, v
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
