package scoring

import (
	"math/rand"
	"testing"
)

// BenchmarkMerge10k is the coordinator-side cost of a 10,000-row generate job
// in batches of 8: plan, accept every batch (all text metrics), finish
// (predictions.jsonl and metrics.json, fsynced).
func BenchmarkMerge10k(b *testing.B) {
	benchMerge(b, TaskGenerate, []string{"loss", "perplexity", "exact_match", "f1", "rouge_l", "bleu"})
}

// BenchmarkMerge10kLoss is the same for a loss job.
func BenchmarkMerge10kLoss(b *testing.B) {
	benchMerge(b, TaskLoss, nil)
}

func benchMerge(b *testing.B, task string, metrics []string) {
	rng := rand.New(rand.NewSource(1))
	preds := randomGenerate(rng, 10000)
	lengths := make([]int, len(preds))
	for i := range preds {
		preds[i].Error = ""
		lengths[i] = 8 + len(preds[i].Output)/4
	}
	spec := Spec{Task: task, Metrics: metrics, OnRowError: "record"}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		plan := Plan(lengths, 8, 0)
		batches := make([][]Prediction, len(plan))
		for id := range plan {
			for _, r := range plan[id].Rows {
				batches[id] = append(batches[id], preds[r])
			}
		}
		m, err := NewMerger(MergerOptions{Dir: b.TempDir(), Plan: plan, Spec: spec})
		if err != nil {
			b.Fatal(err)
		}
		for id := range plan {
			if _, err := m.Accept(id, batches[id]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}
