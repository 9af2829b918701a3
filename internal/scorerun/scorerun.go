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
	// Refs are the references generation is compared with: the row's
	// "references" list, or Ref.
	Refs []string
	// Multiple choice and classification: Choices are whole sequences
	// (context and candidate),
	// scored from ChoiceStart on; ChoiceChars are the choices' lengths.
	Choices     [][]int64
	ChoiceStart []int
	ChoiceChars []int
	Gold        int
	// Candidates are the candidates' texts (classification: the labels).
	Candidates []string
	// Error says why the row cannot be scored; the row is not computed.
	Error string
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
		for _, c := range t.Choices {
			lengths[i] = max(lengths[i], len(c))
		}
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
// task: one Task per input row, in file order (Index is the row's position),
// so that predictions.jsonl has a line for every row. A row that cannot be
// scored (malformed, empty, longer than dataset.max_seq_len, an unknown
// label) gets Task.Error with scoring.on_row_error record, and fails
// Prepare, naming the row, with fail.
func Prepare(ctx context.Context, cfg *configs.Config, tok *tokenizer.Tokenizer, file string) ([]Task, error) {
	prep, err := rowPreparer(cfg, tok)
	if err != nil {
		return nil, err
	}
	idField := cfg.Dataset.Fields.ID
	if idField == "" {
		idField = "id"
	}
	fail := cfg.Scoring.OnRowError == "fail"
	var out []Task
	err = eachRow(file, func(row dataset.Row, rowErr error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := int64(len(out))
		t := Task{Index: i, ID: strconv.FormatInt(i, 10), Gold: scoring.NoChoice}
		if id := idString(row.Fields[idField]); id != "" {
			t.ID = id
		}
		if rowErr == nil {
			rowErr = prep(row, &t)
		}
		if rowErr != nil {
			var re *dataset.RowError
			if !errors.As(rowErr, &re) {
				rowErr = fmt.Errorf("%s: %w", row.Src, rowErr)
			}
			if fail {
				return fmt.Errorf("scoring.on_row_error is fail: %w", rowErr)
			}
			t = Task{Index: t.Index, ID: t.ID, Gold: scoring.NoChoice, Error: rowErr.Error()}
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// rowPreparer returns the function that fills a Task from a row for the
// config's task.
func rowPreparer(cfg *configs.Config, tok *tokenizer.Tokenizer) (func(dataset.Row, *Task) error, error) {
	switch cfg.Scoring.Task {
	case scoring.TaskMultipleChoice:
		return func(row dataset.Row, t *Task) error { return prepareChoice(row, tok, t) }, nil
	case scoring.TaskClassification:
		labels := cfg.Scoring.Labels
		return func(row dataset.Row, t *Task) error { return prepareClass(row, tok, labels, t) }, nil
	}
	enc, err := dataset.NewRowEncoder(cfg.Dataset, tok)
	if err != nil {
		return nil, err
	}
	generate := cfg.Scoring.Task == scoring.TaskGenerate
	return func(row dataset.Row, t *Task) error {
		ids, labels, err := enc.Encode(row)
		if err != nil {
			return err
		}
		t.IDs, t.Labels = ids, labels
		if !generate {
			return nil
		}
		cut := len(labels)
		var target []int
		for j, l := range labels {
			if l != dataset.IgnoreIndex {
				cut = min(cut, j)
				target = append(target, int(l))
			}
		}
		t.Prompt = ids[:cut]
		if t.Ref, err = tok.Decode(target, true); err != nil {
			return err
		}
		t.Refs = []string{t.Ref}
		if v, ok := row.Fields["references"]; ok && v != nil {
			if t.Refs, err = stringList(v, "references"); err != nil {
				return err
			}
		}
		return nil
	}, nil
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
