package torchengine

import (
	"context"
	"fmt"

	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/dataset/tokenizer"
	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/internal/scorerun"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/scoring"
	"github.com/herdml/herd/worker"
)

// NewScorer loads spec's model (and adapter) for scoring and prepares the
// rows of spec.Data as `herd score` does (internal/scorerun.Prepare);
// Score runs internal/scorerun.ScoreBatch, the same unit of work as the
// single-process path. Only the first device of a list is used.
func NewScorer(ctx context.Context, spec worker.ScorerSpec) (worker.Scorer, error) {
	dev, err := torch.ParseDevice(firstDevice(spec.Device))
	if err != nil {
		return nil, err
	}
	cfg := spec.Config
	tok, _, err := dataset.LoadTokenizer(spec.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	tasks, err := scorerun.Prepare(ctx, cfg, tok, spec.Data)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", spec.Data, err)
	}
	dt, err := engine.ParseDType(cfg.Model.DType)
	if err != nil {
		return nil, err
	}
	sc, err := engine.NewScorer(spec.ModelDir, spec.Adapter, dt, dev, cfg.Training.Threads)
	if err != nil {
		return nil, err
	}
	return &scorer{sc: sc, tok: tok, spec: scoring.SpecFromConfig(cfg.Scoring), tasks: tasks}, nil
}

func firstDevice(list string) string {
	for i := 0; i < len(list); i++ {
		if list[i] == ',' {
			return list[:i]
		}
	}
	return list
}

type scorer struct {
	sc    *engine.Scorer
	tok   *tokenizer.Tokenizer
	spec  scoring.Spec
	tasks []scorerun.Task
}

func (s *scorer) Rows() int { return len(s.tasks) }

func (s *scorer) Score(rows []int) ([]scoring.Prediction, error) {
	batch := make([]scorerun.Task, len(rows))
	for i, r := range rows {
		if r < 0 || r >= len(s.tasks) {
			return nil, fmt.Errorf("row %d of %d", r, len(s.tasks))
		}
		batch[i] = s.tasks[r]
	}
	return scorerun.ScoreBatch(s.sc, s.tok, s.spec, batch)
}

func (s *scorer) Close() { s.sc.Close() }
