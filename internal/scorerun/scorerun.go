// Package scorerun scores a data set with a model (and optionally a LoRA
// adapter) in one process: it reads and tokenizes the rows as training
// would, plans length-sorted batches, scores each batch on the engine and
// merges the predictions exactly once, in input order, with the metrics.
// ScoreBatch, the unit of work, is what a worker runs for the coordinator's
// fan-out.
package scorerun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/dataset/tokenizer"
	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/scoring"
)

// Options say what to score and where the outputs go.
type Options struct {
	ModelDir   string // Hugging Face model directory (with the tokenizer)
	AdapterDir string // PEFT adapter; "" scores the base model
	Data       string // rows to score (JSONL, JSON, CSV or Parquet)
	Out        string // predictions.jsonl and metrics.json go here
	Config     *configs.Config
	Device     torch.Device
	Log        *slog.Logger
}

// Task is one row prepared for scoring.
type Task struct {
	Index int64
	ID    string
	// IDs and Labels are the tokenized example, labels -100 where not
	// scored (loss). For generation, Prompt is the unscored prefix and Ref
	// the scored text.
	IDs, Labels []int64
	Prompt      []int64
	Ref         string
	// Multiple choice: Choices are whole sequences (question and choice),
	// scored from ChoiceStart on; ChoiceChars are the choices' lengths.
	Choices     [][]int64
	ChoiceStart []int
	ChoiceChars []int
	Gold        int
}

// Run scores opt.Data and writes the outputs. It returns the metrics.
func Run(ctx context.Context, opt Options) (scoring.Result, error) {
	cfg := opt.Config
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec := scoring.SpecFromConfig(cfg.Scoring)
	tok, _, err := dataset.LoadTokenizer(opt.ModelDir)
	if err != nil {
		return scoring.Result{}, err
	}
	tasks, err := Prepare(ctx, cfg, tok, opt.Data)
	if err != nil {
		return scoring.Result{}, err
	}
	dt, err := engine.ParseDType(cfg.Model.DType)
	if err != nil {
		return scoring.Result{}, err
	}
	sc, err := engine.NewScorer(opt.ModelDir, opt.AdapterDir, dt, opt.Device, cfg.Training.Threads)
	if err != nil {
		return scoring.Result{}, err
	}
	defer sc.Close()

	lengths := make([]int, len(tasks))
	for i, t := range tasks {
		lengths[i] = max(len(t.IDs), len(t.Prompt), 1)
	}
	plan := scoring.Plan(lengths, cfg.Scoring.BatchSize, 0)
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return scoring.Result{}, err
	}
	spool := filepath.Join(opt.Out, ".spool")
	m, err := scoring.NewMerger(scoring.MergerOptions{Dir: opt.Out, SpoolDir: spool, Plan: plan, Spec: spec})
	if err != nil {
		return scoring.Result{}, err
	}
	for i, b := range plan {
		if err := ctx.Err(); err != nil {
			return scoring.Result{}, err
		}
		batch := make([]Task, len(b.Rows))
		for j, r := range b.Rows {
			batch[j] = tasks[r]
		}
		preds, err := ScoreBatch(sc, tok, spec, batch)
		if err != nil {
			return scoring.Result{}, fmt.Errorf("score batch %d: %w", b.ID, err)
		}
		if _, err := m.Accept(b.ID, preds); err != nil {
			return scoring.Result{}, fmt.Errorf("score batch %d: %w", b.ID, err)
		}
		log.Info("scored", "batch", b.ID, "rows", len(b.Rows), "done", i+1, "batches", len(plan))
	}
	res, err := m.Finish()
	if err != nil {
		return res, err
	}
	return res, os.RemoveAll(spool)
}

// Prepare reads and tokenizes the rows of file for the config's scoring
// task, in file order; Index is the position in the returned slice, which
// predictions.jsonl follows.
func Prepare(ctx context.Context, cfg *configs.Config, tok *tokenizer.Tokenizer, file string) ([]Task, error) {
	ids, err := rowIDs(file, cfg.Dataset.Fields.ID)
	if err != nil {
		return nil, err
	}
	if cfg.Scoring.Task == scoring.TaskMultipleChoice {
		return prepareChoices(file, tok, ids)
	}
	d := cfg.Dataset
	d.Train, d.Eval, d.EvalSplit, d.Packing = file, "", 0, false
	data, err := dataset.Load(ctx, d, tok, dataset.Options{Seed: uint64(cfg.Training.Seed)})
	if err != nil {
		return nil, err
	}
	defer data.Close()
	set := data.Train
	out := make([]Task, set.Len())
	for i := range out {
		x, labels := set.Sequence(i)
		t := Task{Index: int64(i), IDs: x, Labels: labels, ID: strconv.Itoa(i)}
		if rows := set.Rows(i); len(rows) > 0 && rows[0] < len(ids) && ids[rows[0]] != "" {
			t.ID = ids[rows[0]]
		}
		if cfg.Scoring.Task == scoring.TaskGenerate {
			cut := len(labels)
			var target []int
			for j, l := range labels {
				if l != dataset.IgnoreIndex {
					cut = min(cut, j)
					target = append(target, int(l))
				}
			}
			t.Prompt = x[:max(cut, 1)]
			if t.Ref, err = tok.Decode(target, true); err != nil {
				return nil, err
			}
		}
		out[i] = t
	}
	return out, nil
}

// rowIDs reads each row's id field as text, in file order ("" when absent).
func rowIDs(file, field string) ([]string, error) {
	if field == "" {
		field = "id"
	}
	var out []string
	err := eachRow(file, func(row dataset.Row, rowErr error) error {
		if rowErr != nil {
			out = append(out, "")
			return nil
		}
		out = append(out, idString(row.Fields[field]))
		return nil
	})
	return out, err
}

// eachRow calls f for every row of file, malformed ones with their error.
func eachRow(file string, f func(dataset.Row, error) error) error {
	r, err := dataset.OpenRows(file)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		row, err := r.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, dataset.ErrBadRow):
			if err := f(row, err); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := f(row, nil); err != nil {
				return err
			}
		}
	}
}

func idString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}
