// Package engine is the training and scoring step on one device: it loads
// the base model and the LoRA adapter, runs micro-batches forward and
// backward, hands the flat gradient buffer to whoever reduces it, applies
// the reduced buffer with clipping, the learning-rate schedule and AdamW,
// and saves and restores checkpoints. The worker drives it; it knows
// nothing about the network.
package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
)

// Settings are what a training engine needs beyond the model directory.
type Settings struct {
	DType  torch.DType
	Device torch.Device
	// NewLinear overrides how base projections are built (QLoRA); nil = dense.
	NewLinear model.LinearFactory
	LoRA      lora.Config
	Schedule  Schedule
	AdamW     torch.AdamWConfig
	// MaxGradNorm clips the global gradient norm; 0 = off.
	MaxGradNorm float64
	// Seed drives the adapter's initialisation and dropout.
	Seed uint64
	// Threads sets libtorch's intra-op threads; 0 keeps libtorch's choice.
	Threads int
	// Autocast, when not 0, runs the forward pass in that dtype with
	// libtorch's autocast (training.autocast: bf16).
	Autocast torch.DType
	// Checkpointing recomputes each layer in the backward pass instead of
	// keeping its activations (model.gradient_checkpointing).
	Checkpointing bool
}

// Engine trains one adapter on one device. It is not safe for concurrent
// use: one goroutine drives it.
type Engine struct {
	th      *torch.Thread // every libtorch call of the engine runs here
	set     Settings
	Model   *model.Model
	Adapter *lora.Adapter
	opt     *torch.AdamW
	step    int // optimizer steps taken
	micro   int // micro-batches since the last step
	grad    []float32
}

// Batch is token ids and labels [B, S], row-major, labels IgnoreIndex
// where not trained on.
type Batch struct {
	IDs, Labels []int64
	B, S        int
}

// Tokens counts the labels that are trained on (next-token targets:
// positions 1..S-1 of each row).
func (b Batch) Tokens() int {
	n := 0
	for r := 0; r < b.B; r++ {
		for _, l := range b.Labels[r*b.S+1 : (r+1)*b.S] {
			if l != model.IgnoreIndex {
				n++
			}
		}
	}
	return n
}

// New loads the model in modelDir and creates a fresh adapter.
func New(modelDir string, set Settings) (e *Engine, err error) {
	if err := set.Schedule.Validate(); err != nil {
		return nil, err
	}
	if err := torch.Load(); err != nil {
		return nil, err
	}
	th := torch.NewThread()
	th.Do(func() { e, err = newEngine(modelDir, set) })
	if err != nil {
		th.Close()
		return nil, err
	}
	e.th = th
	return e, nil
}

func newEngine(modelDir string, set Settings) (*Engine, error) {
	if set.Threads > 0 {
		if err := torch.SetNumThreads(set.Threads); err != nil {
			return nil, err
		}
	}
	m, err := model.Load(modelDir, model.LoadOptions{DType: set.DType, Device: set.Device, NewLinear: set.NewLinear})
	if err != nil {
		return nil, err
	}
	ad, err := lora.New(m, set.LoRA, set.Seed)
	if err != nil {
		m.Free()
		return nil, err
	}
	e := &Engine{set: set, Model: m, Adapter: ad}
	if e.opt, err = torch.NewAdamW(ad.Params(), set.AdamW); err != nil {
		e.free()
		return nil, err
	}
	e.grad = make([]float32, ad.NumParams())
	return e, nil
}

// Close frees the model, the adapter and the optimizer state.
func (e *Engine) Close() {
	e.th.Do(e.free)
	e.th.Close()
}

func (e *Engine) free() {
	if e.opt != nil {
		e.opt.Free()
	}
	if e.Adapter != nil {
		e.Adapter.Free()
	}
	if e.Model != nil {
		e.Model.Free()
	}
}

// Step is the number of optimizer steps taken.
func (e *Engine) Step() int { return e.step }

// MicroResult is what one micro-batch reports.
type MicroResult struct {
	LossSum float64 // summed token cross-entropy
	Tokens  int     // target tokens
}

// MicroBatch runs b forward and backward, adding its gradient (of the
// summed loss) to the accumulated one.
func (e *Engine) MicroBatch(b Batch) (r MicroResult, err error) {
	e.th.Do(func() { r, err = e.microBatch(b) })
	return r, err
}

func (e *Engine) microBatch(b Batch) (MicroResult, error) {
	if len(b.IDs) != b.B*b.S || len(b.Labels) != b.B*b.S {
		return MicroResult{}, fmt.Errorf("engine: batch of %dx%d has %d ids and %d labels", b.B, b.S, len(b.IDs), len(b.Labels))
	}
	// Dropout draws from libtorch's generator: seed it from (seed, step,
	// micro-batch) so that a resumed run draws what an unbroken one would.
	torch.ManualSeed(mix(e.set.Seed, uint64(e.step), uint64(e.micro)))
	e.micro++
	e.Adapter.Training = true
	defer func() { e.Adapter.Training = false }()

	s := torch.NewScope()
	defer s.Close()
	ids := s.ToDevice(s.FromInt64(b.IDs, int64(b.B), int64(b.S)), e.Model.Device)
	labels := s.ToDevice(s.FromInt64(b.Labels, int64(b.B), int64(b.S)), e.Model.Device)
	autocastOff := func() {}
	if e.set.Autocast != 0 {
		off, err := torch.Autocast(e.Model.Device, e.set.Autocast)
		if err != nil {
			return MicroResult{}, err
		}
		// The backward pass runs outside autocast, as PyTorch advises; the
		// checkpointed path replays forwards inside its backward, so it
		// keeps autocast on throughout.
		autocastOff = sync.OnceFunc(off)
		defer autocastOff()
	}
	batch, opt := model.Batch{IDs: ids}, model.Options{Adapter: e.Adapter}
	if e.set.Checkpointing {
		step, micro := uint64(e.step), uint64(e.micro)
		loss := e.Model.TrainCheckpointed(s, batch, labels, opt, func(layer int) {
			torch.ManualSeed(mix(e.set.Seed, step, micro, uint64(layer)))
		})
		lossSum := s.Item(loss)
		if err := s.Err(); err != nil {
			return MicroResult{}, fmt.Errorf("engine: checkpointed step: %w", err)
		}
		return MicroResult{LossSum: lossSum, Tokens: b.Tokens()}, nil
	}
	logits := e.Model.Forward(s, batch, opt)
	loss := model.CausalLMLoss(s, logits, labels)
	lossSum := s.Item(loss)
	if err := s.Err(); err != nil {
		return MicroResult{}, fmt.Errorf("engine: forward: %w", err)
	}
	autocastOff()
	if err := loss.Backward(); err != nil {
		return MicroResult{}, fmt.Errorf("engine: backward: %w", err)
	}
	return MicroResult{LossSum: lossSum, Tokens: b.Tokens()}, nil
}

// EvalLoss runs b forward without gradients, dropout off, and returns its
// summed token loss: the in-training evaluation (training.eval_every). It
// draws no random numbers and leaves the accumulated gradient alone, so a
// run with evaluations trains exactly as one without.
func (e *Engine) EvalLoss(b Batch) (r MicroResult, err error) {
	if len(b.IDs) != b.B*b.S || len(b.Labels) != b.B*b.S {
		return MicroResult{}, fmt.Errorf("engine: batch of %dx%d has %d ids and %d labels", b.B, b.S, len(b.IDs), len(b.Labels))
	}
	e.th.Do(func() { r, err = e.evalLoss(b) })
	return r, err
}

func (e *Engine) evalLoss(b Batch) (MicroResult, error) {
	defer torch.NoGrad()()
	s := torch.NewScope()
	defer s.Close()
	ids := s.ToDevice(s.FromInt64(b.IDs, int64(b.B), int64(b.S)), e.Model.Device)
	labels := s.ToDevice(s.FromInt64(b.Labels, int64(b.B), int64(b.S)), e.Model.Device)
	if e.set.Autocast != 0 {
		off, err := torch.Autocast(e.Model.Device, e.set.Autocast)
		if err != nil {
			return MicroResult{}, err
		}
		defer off()
	}
	logits := e.Model.Forward(s, model.Batch{IDs: ids}, model.Options{Adapter: e.Adapter})
	lossSum := s.Item(model.CausalLMLoss(s, logits, labels))
	if err := s.Err(); err != nil {
		return MicroResult{}, fmt.Errorf("engine: eval: %w", err)
	}
	return MicroResult{LossSum: lossSum, Tokens: b.Tokens()}, nil
}

// Gradients returns the accumulated gradient as the flat buffer (owned by
// the engine, valid until the next call), for the collective to reduce.
func (e *Engine) Gradients() ([]float32, error) {
	var err error
	e.th.Do(func() { err = e.Adapter.Grads(e.grad) })
	if err != nil {
		return nil, err
	}
	return e.grad, nil
}

// StepStats describe one optimizer step.
type StepStats struct {
	Step     int     // 1-based index of the step just taken
	LR       float64 // learning rate used
	GradNorm float64 // norm of the mean gradient before clipping
}

// ErrNoTokens is returned when a global batch has no target token.
var ErrNoTokens = errors.New("engine: the global batch has no target tokens")

// Apply takes one optimizer step from a reduced gradient buffer holding the
// sum of summed-loss gradients over the global batch, and the number of
// target tokens in it: the step follows the mean token loss, whatever the
// number of workers and micro-batches. grad is scaled in place.
func (e *Engine) Apply(grad []float32, tokens int) (st StepStats, err error) {
	if tokens <= 0 {
		return StepStats{}, ErrNoTokens
	}
	e.th.Do(func() { st, err = e.apply(grad, tokens) })
	return st, err
}

func (e *Engine) apply(grad []float32, tokens int) (StepStats, error) {
	inv := float32(1 / float64(tokens))
	for i := range grad {
		grad[i] *= inv
	}
	norm := Norm(grad)
	if c := ClipScale(norm, e.set.MaxGradNorm); c < 1 {
		cf := float32(c)
		for i := range grad {
			grad[i] *= cf
		}
	}
	lr := e.set.Schedule.At(e.step)
	s := torch.NewScope()
	defer s.Close()
	gs, err := e.Adapter.GradTensors(s, grad)
	if err != nil {
		return StepStats{}, err
	}
	if err := e.opt.Step(gs, lr); err != nil {
		return StepStats{}, fmt.Errorf("engine: optimizer step: %w", err)
	}
	if err := e.Adapter.ZeroGrad(); err != nil {
		return StepStats{}, err
	}
	e.step++
	e.micro = 0
	return StepStats{Step: e.step, LR: lr, GradNorm: norm}, nil
}

// mix hashes seeds into one 63-bit libtorch seed.
func mix(vs ...uint64) int64 {
	h := fnv.New64a()
	var b [8]byte
	for _, v := range vs {
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	return int64(h.Sum64() >> 1)
}
