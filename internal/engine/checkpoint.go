package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/herdml/herd/internal/fsutil"
	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/lora"
)

// A checkpoint is a directory:
//
//	adapter_config.json, adapter_model.safetensors   the adapter, PEFT layout
//	optimizer.safetensors                            AdamW moments per parameter
//	trainer_state.json                               step, seed, the caller's data position
//
// written to a temporary directory and renamed into place, so a crash
// leaves the previous checkpoint or the new one, never a mix.

// Checkpoint file names.
const (
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "trainer_state.json"
)

// TrainerState is trainer_state.json.
type TrainerState struct {
	Step int    `json:"step"`
	Seed uint64 `json:"seed"`
	// Data is the caller's position in the data (epoch, offset, shard
	// plan): opaque here, restored as is.
	Data json.RawMessage `json:"data,omitempty"`
	// BaseModel is the model the adapter belongs to.
	BaseModel string `json:"base_model"`
}

// Save writes a checkpoint of the current step to dir.
func (e *Engine) Save(dir, baseModel string, data json.RawMessage) (err error) {
	e.th.Do(func() { err = e.save(dir, baseModel, data) })
	return err
}

func (e *Engine) save(dir, baseModel string, data json.RawMessage) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after a successful rename
	if err := e.Adapter.Save(tmp, baseModel); err != nil {
		return err
	}
	m, v, err := e.opt.Moments()
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	var tensors []safetensors.NamedTensor
	for i, p := range e.Adapter.Params() {
		for _, mom := range []struct {
			name string
			val  []float32
		}{{"exp_avg", m[i]}, {"exp_avg_sq", v[i]}} {
			raw, err := safetensors.FromFloat32(safetensors.F32, mom.val)
			if err != nil {
				return err
			}
			tensors = append(tensors, safetensors.NamedTensor{Name: fmt.Sprintf("%s.%04d", mom.name, i), DType: safetensors.F32, Shape: p.Shape(), Data: raw})
		}
	}
	meta := map[string]string{"step": strconv.FormatInt(e.opt.Steps(), 10)}
	if err := safetensors.Write(filepath.Join(tmp, OptimizerFile), tensors, meta); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	st, err := json.MarshalIndent(TrainerState{Step: e.step, Seed: e.set.Seed, Data: data, BaseModel: baseModel}, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(filepath.Join(tmp, StateFile), append(st, '\n')); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := fsutil.ReplaceDir(tmp, dir); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	return nil
}

// Restore loads a checkpoint written by Save into the engine: adapter
// values, optimizer moments and step. It returns the trainer state, whose
// Data the caller uses to continue where the data stood.
func (e *Engine) Restore(dir string) (st *TrainerState, err error) {
	e.th.Do(func() { st, err = e.restore(dir) })
	return st, err
}

func (e *Engine) restore(dir string) (*TrainerState, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("restore checkpoint: %w", err)
	}
	var st TrainerState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("restore checkpoint: %s: %w", filepath.Join(dir, StateFile), err)
	}
	saved, err := lora.Load(dir, e.Model)
	if err != nil {
		return nil, fmt.Errorf("restore checkpoint: %w", err)
	}
	vals, err := saved.Values()
	saved.Free()
	if err != nil {
		return nil, err
	}
	if err := e.Adapter.SetValues(vals); err != nil {
		return nil, fmt.Errorf("restore checkpoint %s: the adapter does not match this run's lora settings: %w", dir, err)
	}
	f, err := safetensors.Open(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return nil, fmt.Errorf("restore checkpoint: %w", err)
	}
	defer f.Close()
	var m, v [][]float32
	for i := range e.Adapter.Params() {
		mi, err := readF32(f, fmt.Sprintf("exp_avg.%04d", i))
		if err != nil {
			return nil, err
		}
		vi, err := readF32(f, fmt.Sprintf("exp_avg_sq.%04d", i))
		if err != nil {
			return nil, err
		}
		m, v = append(m, mi), append(v, vi)
	}
	steps, err := strconv.ParseInt(f.Metadata()["step"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("restore checkpoint: %s: bad step metadata: %w", OptimizerFile, err)
	}
	if err := e.opt.Restore(m, v, steps); err != nil {
		return nil, fmt.Errorf("restore checkpoint: %w", err)
	}
	e.step, e.micro = st.Step, 0
	return &st, nil
}

func readF32(f *safetensors.File, name string) ([]float32, error) {
	info, data, err := f.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("restore checkpoint: %w", err)
	}
	return safetensors.ToFloat32(info.DType, data)
}
