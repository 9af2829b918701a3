package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/worker"
)

// fakeEngine is a deterministic stand-in for the torch engine: its
// "gradients" are integer-valued, so their sums are exact in float32 in any
// grouping, and a run ends with bit-identical parameters whatever the world
// size, like the real engine within rounding.
type fakeEngine struct {
	reg    *registry
	id     string
	params []float32
	mom    []float32
	grad   []float32
	step   int
	delay  time.Duration
	seen   []int64 // first token of every sequence trained on, this step
}

const fakeParams = 8

type registry struct {
	mu    sync.Mutex
	final map[string][]float32 // worker → parameters after its last step
	steps map[int][]int64      // step → first tokens of the sequences trained on (all workers)
	hook  func(worker string, step int)
}

func newRegistry() *registry {
	return &registry{final: map[string][]float32{}, steps: map[int][]int64{}}
}

func (r *registry) factory(id string, delay time.Duration) worker.EngineFactory {
	return func(_ context.Context, spec worker.EngineSpec) (worker.Engine, error) {
		e := &fakeEngine{reg: r, id: id, params: make([]float32, fakeParams), mom: make([]float32, fakeParams),
			grad: make([]float32, fakeParams), delay: delay}
		for i := range e.params {
			e.params[i] = float32(i) / 8
		}
		return e, nil
	}
}

func (e *fakeEngine) MicroBatch(b worker.Batch) (worker.MicroResult, error) {
	time.Sleep(e.delay)
	var r worker.MicroResult
	for row := range b.B {
		e.seen = append(e.seen, b.IDs[row*b.S])
		for t := 1; t < b.S; t++ {
			l := b.Labels[row*b.S+t]
			if l < 0 {
				continue
			}
			r.Tokens++
			r.LossSum += float64(l % 5)
			for i := range e.grad {
				e.grad[i] += float32((l * int64(i+1)) % 7)
			}
		}
	}
	return r, nil
}

// EvalLoss scores each target token l as (l mod 5) times the step: integer
// values, exact in any grouping, that change as training goes on.
func (e *fakeEngine) EvalLoss(b worker.Batch) (worker.MicroResult, error) {
	return fakeEval(b, e.step), nil
}

func fakeEval(b worker.Batch, step int) worker.MicroResult {
	var r worker.MicroResult
	for i, l := range b.Labels {
		if l >= 0 && i%b.S > 0 {
			r.Tokens++
			r.LossSum += float64(l%5) * float64(step)
		}
	}
	return r
}

func (e *fakeEngine) Gradients() ([]float32, error) { return e.grad, nil }

func (e *fakeEngine) Apply(grad []float32, tokens int) (worker.StepResult, error) {
	for i := range e.params {
		g := grad[i] / float32(tokens)
		e.mom[i] = 0.5*e.mom[i] + g
		e.params[i] -= 0.01 * e.mom[i]
	}
	clear(e.grad)
	e.step++
	e.reg.mu.Lock()
	e.reg.steps[e.step] = append(e.reg.steps[e.step], e.seen...)
	e.reg.final[e.id] = slices.Clone(e.params)
	hook := e.reg.hook
	e.reg.mu.Unlock()
	e.seen = nil
	if hook != nil {
		hook(e.id, e.step)
	}
	return worker.StepResult{Step: e.step, LR: 0.01}, nil
}

func (e *fakeEngine) Step() int { return e.step }
func (e *fakeEngine) DiscardGradients() error {
	clear(e.grad)
	e.seen = nil
	return nil
}
func (e *fakeEngine) StateLen() int { return 2 * fakeParams }
func (e *fakeEngine) State() ([]float32, error) {
	return append(slices.Clone(e.params), e.mom...), nil
}
func (e *fakeEngine) SetState(v []float32, step int) error {
	if len(v) != 2*fakeParams {
		return fmt.Errorf("state of %d", len(v))
	}
	copy(e.params, v[:fakeParams])
	copy(e.mom, v[fakeParams:])
	e.step = step
	return nil
}

type fakeCheckpoint struct {
	Step  int       `json:"step"`
	State []float32 `json:"state"`
}

func (e *fakeEngine) Save(dir string, _ json.RawMessage) error {
	st, _ := e.State()
	data, _ := json.Marshal(fakeCheckpoint{Step: e.step, State: st})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "state.json"), data, 0o644)
}

func (e *fakeEngine) Restore(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return 0, err
	}
	var c fakeCheckpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return 0, err
	}
	return c.Step, e.SetState(c.State, c.Step)
}

func (e *fakeEngine) Close() {}

// fakeData has n sequences; sequence i starts with token 1000+i (so the
// trained sequences can be identified) and has 3 + i%4 tokens.
type fakeData struct{ n int }

func (d fakeData) Len() int { return d.n }

func (d fakeData) Batch(indices []int) (ids, labels []int64, rows, seqLen int) {
	for _, i := range indices {
		seqLen = max(seqLen, 3+i%4)
	}
	rows = len(indices)
	ids, labels = make([]int64, rows*seqLen), make([]int64, rows*seqLen)
	for r, i := range indices {
		for t := range seqLen {
			k := r*seqLen + t
			switch {
			case t >= 3+i%4:
				ids[k], labels[k] = 0, -100
			case t == 0:
				ids[k], labels[k] = int64(1000+i), -100
			default:
				ids[k], labels[k] = int64(i*7+t), int64(i*7+t)
			}
		}
	}
	return ids, labels, rows, seqLen
}

// fakeEvalData also has an evaluation set.
type fakeEvalData struct {
	fakeData
	eval fakeData
}

func (d fakeEvalData) EvalSet() worker.Data { return d.eval }

func fakeLoader(n int) worker.DataLoader {
	return func(context.Context, *configs.Config, string) (worker.Data, func() error, error) {
		return fakeData{n: n}, func() error { return nil }, nil
	}
}
