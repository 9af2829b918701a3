// Package torchengine adapts internal/engine (libtorch through gotch) to the
// worker.Engine interface. It is the only part of the worker that links
// libtorch; `herd worker join` and `herd train` pass New as the worker's
// EngineFactory.
package torchengine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/worker"
)

// New builds the engine of a job: the model of spec.ModelDir with a fresh
// adapter on spec.Device, configured from spec.Config. A comma-separated
// device list (cuda:0,cuda:1) loads one engine per device and combines them
// in a worker.LocalGroup: local reduction before the network.
func New(ctx context.Context, spec worker.EngineSpec) (worker.Engine, error) {
	devs := strings.Split(spec.Device, ",")
	if len(devs) == 1 {
		return newOne(spec)
	}
	var engs []worker.Engine
	for _, d := range devs {
		one := spec
		one.Device = strings.TrimSpace(d)
		e, err := newOne(one)
		if err != nil {
			for _, e := range engs {
				e.Close()
			}
			return nil, fmt.Errorf("device %s: %w", one.Device, err)
		}
		engs = append(engs, e)
	}
	g, err := worker.NewLocalGroup(engs)
	if err != nil {
		for _, e := range engs {
			e.Close()
		}
		return nil, err
	}
	return g, nil
}

func newOne(spec worker.EngineSpec) (worker.Engine, error) {
	dev, err := torch.ParseDevice(spec.Device)
	if err != nil {
		return nil, err
	}
	set, err := engine.SettingsFromConfig(spec.Config, dev, spec.TotalSteps)
	if err != nil {
		return nil, err
	}
	e, err := engine.New(spec.ModelDir, set)
	if err != nil {
		return nil, err
	}
	return &adapter{e: e, base: spec.Config.Model.Path}, nil
}

type adapter struct {
	e    *engine.Engine
	base string // base model name written into adapter_config.json
}

func (a *adapter) MicroBatch(b worker.Batch) (worker.MicroResult, error) {
	r, err := a.e.MicroBatch(engine.Batch{IDs: b.IDs, Labels: b.Labels, B: b.B, S: b.S})
	return worker.MicroResult{LossSum: r.LossSum, Tokens: r.Tokens}, err
}

func (a *adapter) Gradients() ([]float32, error) { return a.e.Gradients() }

func (a *adapter) EvalLoss(b worker.Batch) (worker.MicroResult, error) {
	r, err := a.e.EvalLoss(engine.Batch{IDs: b.IDs, Labels: b.Labels, B: b.B, S: b.S})
	return worker.MicroResult{LossSum: r.LossSum, Tokens: r.Tokens}, err
}

func (a *adapter) Apply(grad []float32, tokens int) (worker.StepResult, error) {
	st, err := a.e.Apply(grad, tokens)
	return worker.StepResult{Step: st.Step, LR: st.LR, GradNorm: st.GradNorm}, err
}

func (a *adapter) Step() int                                   { return a.e.Step() }
func (a *adapter) DiscardGradients() error                     { return a.e.DiscardGradients() }
func (a *adapter) StateLen() int                               { return a.e.StateLen() }
func (a *adapter) State() ([]float32, error)                   { return a.e.State() }
func (a *adapter) SetState(v []float32, step int) error        { return a.e.SetState(v, step) }
func (a *adapter) Save(dir string, data json.RawMessage) error { return a.e.Save(dir, a.base, data) }
func (a *adapter) Close()                                      { a.e.Close() }

func (a *adapter) Restore(dir string) (int, error) {
	st, err := a.e.Restore(dir)
	if err != nil {
		return 0, err
	}
	if st.Step != a.e.Step() {
		return 0, fmt.Errorf("checkpoint %s: trainer state step %d, engine step %d", dir, st.Step, a.e.Step())
	}
	return st.Step, nil
}
