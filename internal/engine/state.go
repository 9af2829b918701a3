package engine

import (
	"fmt"
)

// The training state a worker hands to a peer that must continue exactly
// where it stands (elastic training: a new group epoch starts with every
// member at the state of the most advanced one). It is one flat float32
// vector, so that it travels through the collective like a gradient:
//
//	adapter values | AdamW first moments | AdamW second moments
//
// each in the order of Adapter.Values (the gradient buffer's order).

// StateLen is the length of the State vector: three times the adapter's
// parameter count.
func (e *Engine) StateLen() int { return 3 * len(e.grad) }

// State returns the adapter values and the AdamW moments as one vector.
func (e *Engine) State() (v []float32, err error) {
	e.th.Do(func() { v, err = e.state() })
	return v, err
}

func (e *Engine) state() ([]float32, error) {
	vals, err := e.Adapter.Values()
	if err != nil {
		return nil, err
	}
	m, v, err := e.opt.Moments()
	if err != nil {
		return nil, fmt.Errorf("engine: state: %w", err)
	}
	out := make([]float32, 0, e.StateLen())
	out = append(out, vals...)
	for _, mi := range m {
		out = append(out, mi...)
	}
	for _, vi := range v {
		out = append(out, vi...)
	}
	if len(out) != e.StateLen() {
		return nil, fmt.Errorf("engine: state has %d values, want %d", len(out), e.StateLen())
	}
	return out, nil
}

// SetState overwrites the adapter values and AdamW moments from a State
// vector, sets the optimizer step count to step and drops any accumulated
// gradient.
func (e *Engine) SetState(v []float32, step int) (err error) {
	if len(v) != e.StateLen() {
		return fmt.Errorf("engine: state vector has %d values, want %d", len(v), e.StateLen())
	}
	if step < 0 {
		return fmt.Errorf("engine: negative step %d", step)
	}
	e.th.Do(func() { err = e.setState(v, step) })
	return err
}

func (e *Engine) setState(v []float32, step int) error {
	n := len(e.grad)
	if err := e.Adapter.SetValues(v[:n]); err != nil {
		return err
	}
	var m, s [][]float32
	off := 0
	for _, p := range e.Adapter.Params() {
		k := 1
		for _, d := range p.Shape() {
			k *= int(d)
		}
		m = append(m, v[n+off:n+off+k])
		s = append(s, v[2*n+off:2*n+off+k])
		off += k
	}
	if off != n {
		return fmt.Errorf("engine: parameters hold %d values, gradient buffer %d", off, n)
	}
	if err := e.opt.Restore(m, s, int64(step)); err != nil {
		return fmt.Errorf("engine: set state: %w", err)
	}
	e.step, e.micro = step, 0
	return e.Adapter.ZeroGrad()
}

// DiscardGradients drops the gradient accumulated since the last step (a
// step that failed half-way) so that the next micro-batch starts clean.
func (e *Engine) DiscardGradients() (err error) {
	e.th.Do(func() {
		e.micro = 0
		err = e.Adapter.ZeroGrad()
	})
	return err
}
