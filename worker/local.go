package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// BatchEngine is implemented by engines that run several micro-batches at
// once (LocalGroup spreads them over its devices). The worker hands such an
// engine all the micro-batches of its shard in one call.
type BatchEngine interface {
	Engine
	// MicroBatches runs every batch forward and backward, accumulating
	// their summed-loss gradients, and returns the summed results.
	MicroBatches(bs []Batch) (MicroResult, error)
}

// LocalGroup drives one engine per local device as one worker: the
// micro-batches of the worker's shard are spread round-robin over the
// devices and run in parallel, their gradients are summed locally (in device
// order) before the network all-reduce, and every device takes the same
// optimizer step. Devices therefore hold identical adapters; checkpoints and
// state come from the first. It implements BatchEngine.
type LocalGroup struct {
	engs []Engine
	sum  []float32
	bufs [][]float32
}

// NewLocalGroup combines engines built from the same spec on different
// devices (at least one).
func NewLocalGroup(engs []Engine) (*LocalGroup, error) {
	if len(engs) == 0 {
		return nil, errors.New("worker: local group of no engine")
	}
	for i, e := range engs[1:] {
		if e.StateLen() != engs[0].StateLen() {
			return nil, fmt.Errorf("worker: local engine %d has state of %d values, engine 0 of %d", i+1, e.StateLen(), engs[0].StateLen())
		}
	}
	return &LocalGroup{engs: engs, bufs: make([][]float32, len(engs))}, nil
}

// each runs fn on every engine concurrently and joins the errors.
func (g *LocalGroup) each(fn func(i int, e Engine) error) error {
	if len(g.engs) == 1 {
		return fn(0, g.engs[0])
	}
	errs := make([]error, len(g.engs))
	var wg sync.WaitGroup
	for i, e := range g.engs {
		wg.Go(func() { errs[i] = fn(i, e) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// MicroBatch runs one batch on the first device.
func (g *LocalGroup) MicroBatch(b Batch) (MicroResult, error) { return g.engs[0].MicroBatch(b) }

// MicroBatches implements BatchEngine.
func (g *LocalGroup) MicroBatches(bs []Batch) (MicroResult, error) {
	res := make([]MicroResult, len(g.engs))
	err := g.each(func(i int, e Engine) error {
		for k := i; k < len(bs); k += len(g.engs) {
			r, err := e.MicroBatch(bs[k])
			if err != nil {
				return err
			}
			res[i].LossSum += r.LossSum
			res[i].Tokens += r.Tokens
		}
		return nil
	})
	var total MicroResult
	for _, r := range res {
		total.LossSum += r.LossSum
		total.Tokens += r.Tokens
	}
	return total, err
}

// Gradients sums the devices' gradients, in device order.
// EvalLoss evaluates on the first device: evaluation is a small share of a
// run, and one device keeps the sum in a fixed order.
func (g *LocalGroup) EvalLoss(b Batch) (MicroResult, error) {
	return evalLoss(g.engs[0], b)
}

// evalLoss runs e's EvalLoss, or says that e cannot evaluate.
func evalLoss(e Engine, b Batch) (MicroResult, error) {
	ev, ok := e.(Evaluator)
	if !ok {
		return MicroResult{}, fmt.Errorf("engine %T cannot evaluate (training.eval_every)", e)
	}
	return ev.EvalLoss(b)
}

func (g *LocalGroup) Gradients() ([]float32, error) {
	first, err := g.engs[0].Gradients()
	if err != nil {
		return nil, err
	}
	if len(g.engs) == 1 {
		return first, nil
	}
	if len(g.sum) != len(first) {
		g.sum = make([]float32, len(first))
	}
	copy(g.sum, first)
	for _, e := range g.engs[1:] {
		gr, err := e.Gradients()
		if err != nil {
			return nil, err
		}
		if len(gr) != len(g.sum) {
			return nil, fmt.Errorf("worker: local gradients of %d and %d values", len(gr), len(g.sum))
		}
		for i, v := range gr {
			g.sum[i] += v
		}
	}
	return g.sum, nil
}

// Apply takes the same step on every device.
func (g *LocalGroup) Apply(grad []float32, tokens int) (StepResult, error) {
	results := make([]StepResult, len(g.engs))
	err := g.each(func(i int, e Engine) error {
		buf := grad
		if i > 0 { // Apply scales its buffer in place: give each device a copy
			if len(g.bufs[i]) != len(grad) {
				g.bufs[i] = make([]float32, len(grad))
			}
			copy(g.bufs[i], grad)
			buf = g.bufs[i]
		}
		var err error
		results[i], err = e.Apply(buf, tokens)
		return err
	})
	return results[0], err
}

// Step is the first device's step count (all are equal).
func (g *LocalGroup) Step() int { return g.engs[0].Step() }

// DiscardGradients drops every device's partial gradient.
func (g *LocalGroup) DiscardGradients() error {
	return g.each(func(_ int, e Engine) error { return e.DiscardGradients() })
}

// StateLen is one device's state length.
func (g *LocalGroup) StateLen() int { return g.engs[0].StateLen() }

// State is the first device's state.
func (g *LocalGroup) State() ([]float32, error) { return g.engs[0].State() }

// SetState sets every device's state.
func (g *LocalGroup) SetState(v []float32, step int) error {
	return g.each(func(_ int, e Engine) error { return e.SetState(v, step) })
}

// Save checkpoints the first device.
func (g *LocalGroup) Save(dir string, data json.RawMessage) error { return g.engs[0].Save(dir, data) }

// Restore loads the checkpoint on every device.
func (g *LocalGroup) Restore(dir string) (int, error) {
	steps := make([]int, len(g.engs))
	err := g.each(func(i int, e Engine) error {
		var err error
		steps[i], err = e.Restore(dir)
		return err
	})
	return steps[0], err
}

// Close frees every device's engine.
func (g *LocalGroup) Close() {
	for _, e := range g.engs {
		e.Close()
	}
}
