package worker

import (
	"context"
	"encoding/json"

	"github.com/herdml/herd/configs"
)

// Batch is token ids and labels [B, S], row-major; labels are
// dataset.IgnoreIndex where not trained on.
type Batch struct {
	IDs, Labels []int64
	B, S        int
}

// MicroResult is what one micro-batch reports.
type MicroResult struct {
	LossSum float64 // summed token cross-entropy
	Tokens  int     // target tokens
}

// StepResult describes one optimizer step.
type StepResult struct {
	Step     int     // optimizer steps taken, after this one
	LR       float64 // learning rate used
	GradNorm float64 // norm of the mean gradient before clipping
}

// Engine is the compute a worker drives: one model and adapter on one
// device. One goroutine uses it at a time.
type Engine interface {
	// MicroBatch runs b forward and backward and adds the gradient of its
	// summed token loss to the accumulated one.
	MicroBatch(b Batch) (MicroResult, error)
	// Gradients returns the accumulated gradient as a flat buffer owned by
	// the engine (valid until the next call).
	Gradients() ([]float32, error)
	// Apply takes one optimizer step from a buffer holding the sum of the
	// summed-loss gradients of the whole global batch and its number of
	// target tokens; grad may be modified.
	Apply(grad []float32, tokens int) (StepResult, error)
	// Step is the optimizer steps taken.
	Step() int
	// DiscardGradients drops a partly accumulated gradient.
	DiscardGradients() error
	// StateLen is the length of State's vector.
	StateLen() int
	// State returns the adapter and optimizer state as one vector.
	State() ([]float32, error)
	// SetState overwrites the state from a State vector and sets the step.
	SetState(v []float32, step int) error
	// Save writes a checkpoint (PEFT adapter, optimizer state, data
	// position) to dir, atomically.
	Save(dir string, data json.RawMessage) error
	// Restore loads a checkpoint written by Save and returns its step.
	Restore(dir string) (step int, err error)
	// Close frees the engine.
	Close()
}

// Evaluator is an Engine that can compute the loss of a batch without
// training on it, for training.eval_every.
type Evaluator interface {
	// EvalLoss runs b forward without gradients (dropout off) and returns
	// its summed token loss; the accumulated gradient is left alone.
	EvalLoss(b Batch) (MicroResult, error)
}

// EngineSpec is what an EngineFactory needs to build an engine for a job.
type EngineSpec struct {
	Config *configs.Config
	// ModelDir is the resolved model directory.
	ModelDir string
	// Device is cpu or cuda:N.
	Device string
	// TotalSteps sizes the learning-rate schedule.
	TotalSteps int
}

// EngineFactory builds the engine of a job (worker/torchengine.New in
// production, a fake in unit tests).
type EngineFactory func(ctx context.Context, spec EngineSpec) (Engine, error)

// Data is a training set as the worker reads it: *dataset.Set implements it.
type Data interface {
	// Len is the number of sequences: the N of the sharding plan.
	Len() int
	// Batch returns sequences as a right-padded [rows, seqLen] batch.
	Batch(indices []int) (ids, labels []int64, rows, seqLen int)
}

// EvalData is a Data that also holds the evaluation set (dataset.eval or
// dataset.eval_split); EvalSet returns nil when there is none.
type EvalData interface {
	EvalSet() Data
}

// DataLoader loads the training set of a job; close releases it.
type DataLoader func(ctx context.Context, cfg *configs.Config, modelDir string) (d Data, close func() error, err error)
