package model_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/model"
	"github.com/herdml/herd/model/tiny"
)

func loadTiny(t *testing.T, o tiny.Options) *model.Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := tiny.Write(dir, o); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir, model.LoadOptions{DType: torch.Float32, Device: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// fullForwardGreedy extends ids one token at a time, recomputing the whole
// sequence without a cache: the reference for cached generation.
func fullForwardGreedy(t *testing.T, m *model.Model, prompt []int64, n int) ([]int64, [][]float32) {
	t.Helper()
	ids := slices.Clone(prompt)
	var out []int64
	var lastLogits [][]float32
	for range n {
		s := torch.NewScope()
		logits := m.Forward(s, model.Batch{IDs: s.FromInt64(ids, 1, int64(len(ids)))}, model.Options{})
		v := s.Float32s(logits)
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		s.Close()
		V := len(v) / len(ids)
		last := v[(len(ids)-1)*V:]
		best := 0
		for i, x := range last {
			if x > last[best] {
				best = i
			}
		}
		lastLogits = append(lastLogits, last)
		out = append(out, int64(best))
		ids = append(ids, int64(best))
	}
	return out, lastLogits
}

func TestGenerateCacheMatchesFullForward(t *testing.T) {
	o := tiny.Default()
	o.Vocab, o.NormNoise, o.Seed = 89, 0.3, 4
	m := loadTiny(t, o)
	prompts := [][]int64{{5, 17, 3, 44, 9}, {7}, {1, 2, 3}}
	const n = 8
	got, err := m.Generate(prompts, model.GenConfig{MaxNewTokens: n, PadID: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for r, p := range prompts {
		want, _ := fullForwardGreedy(t, m, p, n)
		if !slices.Equal(got[r], want) {
			t.Errorf("row %d: batched cached generation %v, full-forward greedy %v", r, got[r], want)
		}
		// Alone in its batch, the row must give the same tokens too.
		alone, err := m.Generate([][]int64{p}, model.GenConfig{MaxNewTokens: n}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(alone[0], want) {
			t.Errorf("row %d alone: %v, want %v", r, alone[0], want)
		}
	}
}

func TestGenerateStopsAndSamplesReproducibly(t *testing.T) {
	o := tiny.Default()
	o.Vocab, o.Seed = 61, 8
	m := loadTiny(t, o)
	prompts := [][]int64{{3, 4, 5}, {9, 9}}
	cfg := model.GenConfig{MaxNewTokens: 12, Temperature: 1.3, TopK: 20, TopP: 0.9, Seeds: []uint64{11, 12}}
	a, err := m.Generate(prompts, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Generate(prompts, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for r := range a {
		if !slices.Equal(a[r], b[r]) || len(a[r]) != 12 {
			t.Fatalf("row %d: %v then %v", r, a[r], b[r])
		}
	}
	// Row 1 alone with its own seed samples the same tokens.
	alone, err := m.Generate(prompts[1:], model.GenConfig{MaxNewTokens: 12, Temperature: 1.3, TopK: 20, TopP: 0.9, Seeds: []uint64{12}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alone[0], a[1]) {
		t.Fatalf("row 1 depends on its batch: %v alone, %v batched", alone[0], a[1])
	}
	// EOS and stop callbacks end rows early.
	eos := a[0][2]
	c2 := cfg
	c2.EOS = []int64{eos}
	c2.Stop = func(row int, gen []int64) bool { return row == 1 && len(gen) == 4 }
	e, err := m.Generate(prompts, c2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(a[0], eos); len(e[0]) != i+1 {
		t.Fatalf("row 0 should end at its first EOS (index %d): %v", i, e[0])
	}
	if len(e[1]) != 4 {
		t.Fatalf("row 1 should stop after 4 tokens: %v", e[1])
	}
	if _, err := m.Generate(prompts, model.GenConfig{}, nil); err == nil {
		t.Fatal("max_new_tokens 0 accepted")
	}
}
