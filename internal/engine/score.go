package engine

import (
	"fmt"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model"
)

// Scorer evaluates a model, with or without an adapter, without training:
// per-example losses and generation.
type Scorer struct {
	Model   *model.Model
	Adapter *lora.Adapter // nil for the base model
	th      *torch.Thread
	owned   bool // Close frees the model, the adapter and the thread
}

// NewScorer loads the model in modelDir and, when adapterDir is not empty,
// the PEFT adapter in it.
func NewScorer(modelDir, adapterDir string, dt torch.DType, dev torch.Device, threads int) (sc *Scorer, err error) {
	if err := torch.Load(); err != nil {
		return nil, err
	}
	th := torch.NewThread()
	th.Do(func() { sc, err = newScorer(modelDir, adapterDir, dt, dev, threads) })
	if err != nil {
		th.Close()
		return nil, err
	}
	sc.th = th
	return sc, nil
}

func newScorer(modelDir, adapterDir string, dt torch.DType, dev torch.Device, threads int) (*Scorer, error) {
	if threads > 0 {
		if err := torch.SetNumThreads(threads); err != nil {
			return nil, err
		}
	}
	m, err := model.Load(modelDir, model.LoadOptions{DType: dt, Device: dev})
	if err != nil {
		return nil, err
	}
	sc := &Scorer{Model: m, owned: true}
	if adapterDir != "" {
		if sc.Adapter, err = lora.Load(adapterDir, m); err != nil {
			m.Free()
			return nil, err
		}
	}
	return sc, nil
}

// Scorer returns a scorer over the engine's model and live adapter (for
// evaluation during training); closing it frees nothing.
func (e *Engine) Scorer() *Scorer { return &Scorer{Model: e.Model, Adapter: e.Adapter, th: e.th} }

// Close frees what NewScorer loaded.
func (sc *Scorer) Close() {
	if !sc.owned {
		return
	}
	sc.th.Do(func() {
		if sc.Adapter != nil {
			sc.Adapter.Free()
		}
		sc.Model.Free()
	})
	sc.th.Close()
}

func (sc *Scorer) adapter() model.Adapter {
	if sc.Adapter == nil {
		return nil // a typed nil would look like an adapter
	}
	return sc.Adapter
}

// RowLoss is one example's summed next-token loss over its target tokens.
type RowLoss struct {
	Sum    float64
	Tokens int
}

// Losses runs b forward without gradients and returns each row's loss.
func (sc *Scorer) Losses(b Batch) (rows []RowLoss, err error) {
	if len(b.IDs) != b.B*b.S || len(b.Labels) != b.B*b.S {
		return nil, fmt.Errorf("engine: batch of %dx%d has %d ids and %d labels", b.B, b.S, len(b.IDs), len(b.Labels))
	}
	sc.th.Do(func() { rows, err = sc.losses(b) })
	return rows, err
}

func (sc *Scorer) losses(b Batch) ([]RowLoss, error) {
	defer torch.NoGrad()()
	s := torch.NewScope()
	defer s.Close()
	ids := s.ToDevice(s.FromInt64(b.IDs, int64(b.B), int64(b.S)), sc.Model.Device)
	labels := s.ToDevice(s.FromInt64(b.Labels, int64(b.B), int64(b.S)), sc.Model.Device)
	logits := sc.Model.Forward(s, model.Batch{IDs: ids}, model.Options{Adapter: sc.adapter()})
	per := s.Float32s(s.ToDevice(model.TokenLosses(s, logits, labels), torch.CPU))
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("engine: score: %w", err)
	}
	out := make([]RowLoss, b.B)
	for r := range out {
		for t := 1; t < b.S; t++ {
			if b.Labels[r*b.S+t] != model.IgnoreIndex {
				out[r].Sum += float64(per[r*(b.S-1)+t-1])
				out[r].Tokens++
			}
		}
	}
	return out, nil
}

// Generate continues prompts (see model.Model.Generate).
func (sc *Scorer) Generate(prompts [][]int64, cfg model.GenConfig) (out [][]int64, err error) {
	sc.th.Do(func() {
		defer torch.NoGrad()()
		out, err = sc.Model.Generate(prompts, cfg, sc.adapter())
	})
	return out, err
}
