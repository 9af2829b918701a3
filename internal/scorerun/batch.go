package scorerun

import (
	"fmt"
	"strings"

	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/dataset/tokenizer"
	"github.com/herdml/herd/internal/engine"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/scoring"
)

// ScoreBatch scores tasks (one planned batch) for spec's task and returns
// one prediction per task, in the same order. Tasks with an Error are not
// computed: their prediction carries the error.
func ScoreBatch(sc *engine.Scorer, tok *tokenizer.Tokenizer, spec scoring.Spec, tasks []Task) ([]scoring.Prediction, error) {
	preds := make([]scoring.Prediction, len(tasks))
	var ok []Task
	var at []int
	for i, t := range tasks {
		preds[i] = scoring.Prediction{Index: t.Index, ID: t.ID, Choice: scoring.NoChoice, ChoiceNorm: scoring.NoChoice, Gold: scoring.NoChoice, Error: t.Error}
		if t.Error == "" {
			ok = append(ok, t)
			at = append(at, i)
		}
	}
	if len(ok) == 0 {
		return preds, nil
	}
	sub := make([]scoring.Prediction, len(ok))
	for j, i := range at {
		sub[j] = preds[i]
	}
	if err := scoreTasks(sc, tok, spec, ok, sub); err != nil {
		return nil, err
	}
	for j, i := range at {
		preds[i] = sub[j]
	}
	return preds, nil
}

func scoreTasks(sc *engine.Scorer, tok *tokenizer.Tokenizer, spec scoring.Spec, tasks []Task, preds []scoring.Prediction) error {
	switch spec.Task {
	case scoring.TaskLoss:
		rows, err := sc.Losses(pad(tasks, func(t Task) ([]int64, []int64) { return t.IDs, t.Labels }))
		if err != nil {
			return err
		}
		for i, r := range rows {
			preds[i].LossSum, preds[i].Tokens = r.Sum, r.Tokens
		}
		return nil
	case scoring.TaskGenerate:
		return generate(sc, tok, spec, tasks, preds)
	case scoring.TaskMultipleChoice, scoring.TaskClassification:
		return choose(sc, tasks, preds)
	}
	return fmt.Errorf("scoring task %q is not supported", spec.Task)
}

// pad right-pads each task's sequence into one batch, labels masked.
func pad(tasks []Task, seq func(Task) (ids, labels []int64)) engine.Batch {
	S := 1
	for _, t := range tasks {
		ids, _ := seq(t)
		S = max(S, len(ids))
	}
	b := engine.Batch{B: len(tasks), S: S, IDs: make([]int64, len(tasks)*S), Labels: make([]int64, len(tasks)*S)}
	for r, t := range tasks {
		ids, labels := seq(t)
		for j := 0; j < S; j++ {
			if j < len(ids) {
				b.IDs[r*S+j], b.Labels[r*S+j] = ids[j], labels[j]
			} else {
				b.Labels[r*S+j] = dataset.IgnoreIndex
			}
		}
	}
	return b
}

func generate(sc *engine.Scorer, tok *tokenizer.Tokenizer, spec scoring.Spec, tasks []Task, preds []scoring.Prediction) error {
	g := spec.Generation
	if g == nil {
		return fmt.Errorf("task generate needs scoring.generation settings")
	}
	special := tok.Special()
	cfg := model.GenConfig{MaxNewTokens: g.MaxNewTokens, Temperature: g.Temperature, TopK: g.TopK, TopP: g.TopP}
	if special.EOS >= 0 {
		cfg.EOS = []int64{int64(special.EOS)}
	}
	if special.PAD >= 0 {
		cfg.PadID = int64(special.PAD)
	}
	prompts := make([][]int64, len(tasks))
	for i, t := range tasks {
		prompts[i] = t.Prompt
		// Each row samples from its own stream: its output does not depend
		// on the batch it was planned into.
		cfg.Seeds = append(cfg.Seeds, uint64(g.Seed)*1_000_003+uint64(t.Index))
	}
	if len(g.Stop) > 0 {
		cfg.Stop = func(row int, gen []int64) bool {
			text, err := tok.Decode(toInts(gen), true)
			if err != nil {
				return false
			}
			for _, s := range g.Stop {
				if strings.Contains(text, s) {
					return true
				}
			}
			return false
		}
	}
	out, err := sc.Generate(prompts, cfg)
	if err != nil {
		return err
	}
	for i, ids := range out {
		text, err := tok.Decode(toInts(ids), true)
		if err != nil {
			preds[i].Error = err.Error()
			continue
		}
		for _, s := range g.Stop {
			if k := strings.Index(text, s); k >= 0 {
				text = text[:k]
			}
		}
		preds[i].Output = text
		preds[i].Refs = tasks[i].Refs
	}
	return nil
}

// choose scores every choice's continuation by its summed log-likelihood
// given the context, in one batch of all (task, choice) pairs.
func choose(sc *engine.Scorer, tasks []Task, preds []scoring.Prediction) error {
	type pair struct{ task, choice int }
	var pairs []pair
	var seqs []Task
	for i, t := range tasks {
		for c, ids := range t.Choices {
			labels := make([]int64, len(ids))
			for j := range labels {
				labels[j] = dataset.IgnoreIndex
				if j >= t.ChoiceStart[c] {
					labels[j] = ids[j]
				}
			}
			pairs = append(pairs, pair{i, c})
			seqs = append(seqs, Task{IDs: ids, Labels: labels})
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	rows, err := sc.Losses(pad(seqs, func(t Task) ([]int64, []int64) { return t.IDs, t.Labels }))
	if err != nil {
		return err
	}
	for i, t := range tasks {
		preds[i].ChoiceLoss = make([]float64, len(t.Choices))
		preds[i].ChoiceLen = append([]int(nil), t.ChoiceChars...)
		preds[i].Gold = t.Gold
	}
	for k, p := range pairs {
		preds[p.task].ChoiceLoss[p.choice] = rows[k].Sum
	}
	for i := range preds {
		preds[i].Resolve()
		if c := preds[i].Choice; c >= 0 && c < len(tasks[i].Candidates) {
			preds[i].Label = tasks[i].Candidates[c]
		}
	}
	return nil
}

func toInts(ids []int64) []int {
	out := make([]int, len(ids))
	for i, x := range ids {
		out[i] = int(x)
	}
	return out
}
